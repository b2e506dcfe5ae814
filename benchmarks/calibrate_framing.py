import copy, numpy as np
from monohead.synth.generator import Generator
from monohead.synth import scene
from monohead.photo import detect_faces
from monohead.framing import head_box
S = 256
g = Generator(S, spp=4)
rows = []
for i in range(40):
    p = copy.deepcopy(g.params(123, i))
    p["pose"]["yaw"] = float(np.clip(p["pose"]["yaw"], -25, 25)); p["pose"]["pitch"] = float(np.clip(p["pose"]["pitch"], -12, 12))
    p["pose"]["roll"] = float(np.clip(p["pose"]["roll"], -8, 8))
    p["pose"]["scale"] = 0.36 * S / 18.5; p["pose"]["offset"] = [0.0, 0.0]
    from monohead.synth import camera
    p["camera"] = camera.sample_camera(np.random.default_rng(i), (S, S), p["pose"]["scale"])
    p["artefacts"].update(border=None, jpeg=0, downscale=1.0, defocus=0.0, motion=0.0)
    p["occluder"] = None if "occluder" in p else None
    s = g.render(p)
    faces = detect_faces(s["image"], detector="frontal")
    if not faces: 
        print(i, "no face"); continue
    b = head_box(tuple(float(t) for t in faces[0][:4]))
    head_px = 18.5 * p["pose"]["scale"]
    m = scene.pose_matrix(p["pose"], g.size)
    fc = (m[:3, :3] @ scene.FACE_CENTRE + m[:3, 3])
    uv = camera.project(fc[None], p["camera"])[0]
    cx, cy = b.x + b.side / 2, b.y + b.side / 2
    rows.append((head_px / b.side, (uv[0] - cx) / b.side, (uv[1] - cy) / b.side))
    print(i, "ratio %.3f dx %.3f dy %.3f" % rows[-1], flush=True)
r = np.array(rows); print("mean", r.mean(0), "std", r.std(0), "n", len(r))

"""Head framing and the fill of crops past the photo's border (monohead.framing), and the
public API's names (monohead.reconstruct is the function, the module stays importable)."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

import monohead
from monohead import framing
from monohead.integration import surfaces


def test_monohead_reconstruct_is_the_function_and_the_module_stays_importable():
    from monohead import photo

    assert monohead.reconstruct is photo.reconstruct
    assert callable(monohead.reconstruct)
    from monohead.reconstruct import FRAMING, preview_png, reconstruct  # the former module's names

    assert preview_png is photo.preview_png
    assert reconstruct is photo.reconstruct
    assert FRAMING is framing.FRAMING
    # importing the module again (statement or importlib) does not shadow the function
    ns: dict = {}
    exec("import monohead.reconstruct\nr = monohead.reconstruct", ns)
    assert ns["r"] is photo.reconstruct
    mod = importlib.import_module("monohead.reconstruct")
    assert mod is sys.modules["monohead.reconstruct"]
    assert mod.Box is framing.Box
    assert monohead.reconstruct is photo.reconstruct
    assert "reconstruct" in monohead.__all__


def test_head_box_frames_the_face():
    box = framing.head_box((100, 50, 40, 44))
    assert box.side == pytest.approx(framing.FRAMING["scale"] * 40)
    cx, cy = box.x + box.side / 2, box.y + box.side / 2
    assert cx == pytest.approx(120)
    assert cy == pytest.approx(72 + framing.FRAMING["dy"] * 40)
    with pytest.raises(ValueError, match="face_box"):
        framing.head_box((0, 0, 0, 10))


def test_crop_inside_the_photo_is_a_plain_resize():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(framing.crop_square(photo, (0, 0, 64), 64), photo)
    np.testing.assert_array_equal(framing.crop_square(photo, framing.Box(16, 8, 32), 32), photo[8:40, 16:48])


def test_crop_past_the_border_fades_to_the_mean_edge_colour_without_streaks():
    # a photo whose left edge is bright at the top and dark at the bottom: repeating edge
    # pixels would paint two long horizontal stripes into the outside part
    photo = np.full((200, 100, 3), 90, np.uint8)
    photo[:100, :10] = 250
    photo[100:, :10] = 10
    crop = framing.crop_square(photo, framing.Box(-100, 0, 200), 128)  # left half outside
    inside = framing.inside_mask(photo.shape[:2], framing.Box(-100, 0, 200), 128)
    assert not inside[:, :64].any()
    assert inside[:, 66:].all()
    far = crop[:, :20].astype(float)  # >= 44 output pixels from the photo: the mean edge colour
    assert np.ptp(far) <= 1
    assert abs(far.mean() - 130) < 8
    near = crop[:, 60:64, 0].astype(float)  # next to the border: still close to the edge pixel
    assert near[:40].mean() > 170
    assert near[-40:].mean() < 90
    # monotone fade along a row, from the edge pixel's colour to the mean
    row = crop[10, :64, 0].astype(int)
    assert (np.diff(row) >= 0).all()


def test_fill_is_the_documented_formula():
    crop = np.zeros((32, 32, 3), np.uint8)
    crop[:, 16:] = (200, 100, 50)
    inside = np.zeros((32, 32), bool)
    inside[:, 16:] = True
    out = framing.fill_outside(crop, inside)
    np.testing.assert_array_equal(out[:, 16:], crop[:, 16:])  # photo pixels untouched
    # constant edge colour: the fill equals it everywhere (edge == mean)
    assert (out == np.array([200, 100, 50], np.uint8)).all()
    empty = framing.fill_outside(crop, np.zeros((32, 32), bool))
    assert (empty == np.array(framing.NEUTRAL, np.uint8)).all()
    with pytest.raises(ValueError, match="inside must have shape"):
        framing.fill_outside(crop, inside[:8])
    with pytest.raises(ValueError, match="crop must be"):
        framing.fill_outside(crop[..., 0], inside)


def test_crop_square_rejects_bad_arguments():
    photo = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="image must be"):
        framing.crop_square(photo[..., 0], (0, 0, 5), 8)
    with pytest.raises(ValueError, match="positive side"):
        framing.crop_square(photo, (0, 0, 0), 8)
    with pytest.raises(ValueError, match="size"):
        framing.crop_square(photo, (0, 0, 5), 0)


def test_the_pipeline_crops_with_the_shared_function(monkeypatch):
    from monohead import photo

    assert photo.crop_square is framing.crop_square
    calls = []
    real = framing.crop_square

    def spy(*a, **k):
        calls.append(a[1])
        return real(*a, **k)

    monkeypatch.setattr(photo, "crop_square", spy)

    def oracle(crops):
        s = surfaces.head(128, neck=True)
        B = len(crops)
        return np.repeat(s.normals[None], B, 0), np.repeat(s.W[None], B, 0), np.repeat(s.mask[None], B, 0)

    img = np.full((64, 80, 3), 120, np.uint8)
    rec = photo.reconstruct(img, detect=False, model=oracle)
    assert calls == [rec.box]
    assert rec.box.side == 80
    assert rec.box.y == -8
    assert (rec.crop[:5] == 120).all()  # filled rows: fade of a constant edge is that constant


def test_pipeline_and_training_data_fill_the_border_with_one_function(monkeypatch):
    """monohead.framing.fill_outside is the one rule: the photo pipeline's crops
    (crop_square) and the training data's crops past a simulated border
    (monohead.synth.artefacts.apply) both call it."""
    from monohead.synth import artefacts

    calls = []
    real = framing.fill_outside

    def spy(crop, inside):
        calls.append(inside.copy())
        return real(crop, inside)

    monkeypatch.setattr(framing, "fill_outside", spy)
    photo = np.full((40, 60, 3), 99, np.uint8)
    framing.crop_square(photo, framing.Box(-30, -10, 80), 32)
    assert len(calls) == 1
    assert not calls[0].all()
    lin = np.full((64, 64, 3), 0.5, np.float32)
    art = artefacts.sample_artefacts(np.random.default_rng(0))
    art.update(border=[0.2, -1.0, 2.0, 0.9], jpeg=0, downscale=1.0)
    img, inside = artefacts.apply(lin, art)
    assert len(calls) == 2
    assert np.array_equal(calls[1], inside)
    assert not inside.all()


# --- turned heads: the yaw read from a first pass, and the second framing -------------------


def _turned_head(yaw_deg: float, size: int = 128):
    """Normals and mask of a head-like ellipsoid (longer front to back, 1.35 x its width) turned
    by ``yaw_deg`` (positive: the face toward the image's right), orthographic, and the face
    box's (centre column, width) at its front end, as a detector puts it."""
    a, c = 22.0, 29.7  # half width (x), half length front to back (face at +z before the turn)
    b = 30.0
    t = np.radians(yaw_deg)
    R = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])  # y-axis turn
    A = R @ np.diag([1 / a**2, 1 / b**2, 1 / c**2]) @ R.T  # x^T A x = 1 in the camera frame
    rows, cols = np.mgrid[0:size, 0:size]
    x, y = cols - size / 2 + 0.5, size / 2 - 0.5 - rows
    # solve A33 z^2 + 2 (A13 x + A23 y) z + (A11 x^2 + 2 A12 x y + A22 y^2) - 1 = 0, front root
    p = A[0, 2] * x + A[1, 2] * y
    q = A[0, 0] * x * x + 2 * A[0, 1] * x * y + A[1, 1] * y * y - 1
    disc = p * p - A[2, 2] * q
    mask = disc > 0
    z = (-p + np.sqrt(np.where(mask, disc, 0))) / A[2, 2]
    P = np.stack([x, y, z], -1)
    n = P @ A  # gradient of x^T A x (A symmetric)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[~mask] = 0
    nose = R @ np.array([0, 0, c])
    face = (size / 2 + 0.75 * nose[0], 0.75 * 2 * a)  # the face box sits toward the nose
    return n.astype(np.float32), mask, face


@pytest.mark.parametrize("yaw", [45.0, 70.0])
def test_estimate_yaw_reads_the_side_a_head_turns_to_both_ways(yaw):
    n, m, face = _turned_head(yaw)
    right = framing.estimate_yaw(n, m, face)
    n2, m2, face2 = _turned_head(-yaw)
    left = framing.estimate_yaw(n2, m2, face2)
    assert right >= framing.REFRAME_MIN_YAW
    assert left <= -framing.REFRAME_MIN_YAW
    # the mirror image of the maps (x -> -x, Nx -> -Nx) reads the opposite turn, exactly
    mirrored = n[:, ::-1] * np.array([-1, 1, 1], np.float32)
    assert framing.estimate_yaw(mirrored, m[:, ::-1], (128 - face[0], face[1])) == -right


def test_estimate_turn_sizes_the_turn_whatever_the_sides_doubt():
    """estimate_turn's size is the widths' reading alone: an unsure side (mean Nx and the mask's
    reach cancelling) scales the yaw down, not the size; the yaw is estimate_yaw's."""
    n, m, face = _turned_head(70.0)
    yaw, size = framing.estimate_turn(n, m, face)
    assert yaw == framing.estimate_yaw(n, m, face)
    assert size >= abs(yaw)
    assert size >= framing.REFRAME_MIN_YAW
    cols = np.nonzero(m)[1]
    centre = float(cols.mean())
    # the face box moved onto the mask's centroid and the normals made symmetric: no side
    flat = n.copy()
    flat[..., 0] = 0.0
    unsure, size2 = framing.estimate_turn(flat, m, (centre, face[1]))
    assert abs(unsure) < 1e-9
    assert size2 == pytest.approx(size)
    assert framing.estimate_turn(n, np.zeros_like(m), face) == (0.0, 0.0)


def test_estimate_yaw_of_a_frontal_head_is_small():
    n, m, _ = _turned_head(0.0)
    cols = np.nonzero(m)[1]
    face = (cols.mean(), float(cols.max() - cols.min() + 1))  # the face box spans the head
    assert abs(framing.estimate_yaw(n, m, face)) < framing.REFRAME_MIN_YAW
    assert framing.estimate_yaw(n, np.zeros_like(m), face) == 0.0  # no mask: no turn read


def test_reframe_box_moves_toward_the_face_and_frames_the_mask():
    box = framing.Box(100.0, 50.0, 256.0)  # 2 photo pixels per crop pixel
    m = np.zeros((128, 128), bool)
    m[30:110, 40:90] = True  # 50 crop pixels wide, centre at column 65
    centre = 100.0 + 65 * 2.0
    right = framing.reframe_box(box, m, 60.0)
    left = framing.reframe_box(box, m, -60.0)
    assert (
        right.side
        == left.side
        == pytest.approx(np.interp(60.0, framing.REFRAME_FIT["yaw"], framing.REFRAME_FIT["side"]) * 100)
    )
    assert right.x + right.side / 2 > centre + 20  # toward the image's right
    assert left.x + left.side / 2 < centre - 20
    assert (right.x + right.side / 2 - centre) == pytest.approx(centre - (left.x + left.side / 2))
    assert right.y == left.y


def test_turn_and_reframe_refuse_bad_input():
    n, m, face = _turned_head(50.0)
    with pytest.raises(ValueError, match="normals must be"):
        framing.estimate_yaw(n[..., :2], m, face)
    with pytest.raises(ValueError, match="normals must be"):
        framing.estimate_yaw(n, m[:64], face)
    with pytest.raises(ValueError, match="face must be"):
        framing.estimate_yaw(n, m, (64.0, 0.0))
    with pytest.raises(ValueError, match="face must be"):
        framing.estimate_yaw(n, m, (np.nan, 40.0))
    box = framing.Box(0.0, 0.0, 128.0)
    with pytest.raises(ValueError, match="empty"):
        framing.reframe_box(box, np.zeros((128, 128), bool), 50.0)
    with pytest.raises(ValueError, match="square"):
        framing.reframe_box(box, m[:64], 50.0)
    with pytest.raises(ValueError, match="finite"):
        framing.reframe_box(box, m, float("nan"))


def test_head_fill_is_the_mask_width_over_the_first_crop():
    first = framing.Box(100.0, 50.0, 256.0)
    m = np.zeros((128, 128), bool)
    m[30:110, 40:90] = True  # 50 crop pixels wide: 100 photo pixels
    assert framing.head_fill(first, first, m) == pytest.approx(100 / 256)
    wide = framing.Box(0.0, 0.0, 1024.0)  # a pass over a wider square: 8 photo pixels per crop pixel
    assert framing.head_fill(first, wide, m) == pytest.approx(400 / 256)
    with pytest.raises(ValueError, match="empty"):
        framing.head_fill(first, first, np.zeros((128, 128), bool))
    with pytest.raises(ValueError, match="square"):
        framing.head_fill(first, first, m[:64])


def test_reframe_box_at_yaw_zero_centres_the_head_at_the_training_width():
    box = framing.Box(100.0, 50.0, 256.0)
    m = np.zeros((128, 128), bool)
    m[0:128, 10:120] = True  # a mask filling the crop: 110 crop pixels wide, centre at column 65
    new = framing.reframe_box(box, m, 0.0)
    assert new.x + new.side / 2 == pytest.approx(100.0 + 65 * 2.0)  # centred on the mask
    assert 220.0 / new.side == pytest.approx(0.40, abs=0.01)  # the head at the training width

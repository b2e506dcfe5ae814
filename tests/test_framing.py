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

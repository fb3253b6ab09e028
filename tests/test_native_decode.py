"""The native PNG fast path of `image_dataset`: taken only for 8-bit gray/RGB PNGs already at the model's size,
pixel-identical to our decoder there, and a damaged file falls back to our decoder (not-ok, no crash)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.preprocess import load_image, resize_square
from pipeline.tfdata import decode_all, image_dataset, native_png_eligible


def _png(path: Path, arr: np.ndarray, mode: str | None = None, **kw) -> str:
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(path, **kw)
    return str(path)


@pytest.fixture()
def pngs(tmp_path):
    rng = np.random.default_rng(0)
    rgb = [_png(tmp_path / f"rgb{i}.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)) for i in range(5)]
    gray = _png(tmp_path / "gray.png", rng.integers(0, 256, (24, 24), dtype=np.uint8))
    inter = _png(tmp_path / "interlaced.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), interlace=1)
    return rgb + [gray, inter]


def test_native_path_is_pixel_identical_to_our_decoder(pngs):
    assert native_png_eligible(pngs, 24)
    native = np.stack([x for x, ok in image_dataset(pngs, 24, native=True).as_numpy_iterator()])
    ours = np.stack([x for x, ok in image_dataset(pngs, 24, native=False).as_numpy_iterator()])
    expected = np.stack([resize_square(load_image(p).rgb, 24) for p in pngs])
    np.testing.assert_array_equal(native, expected)
    np.testing.assert_array_equal(ours, expected)


def test_eligibility_rejects_what_our_decoder_must_handle(tmp_path, pngs):
    rng = np.random.default_rng(1)
    assert not native_png_eligible(pngs, 32)  # a resize is needed
    rgba = _png(tmp_path / "rgba.png", rng.integers(0, 256, (24, 24, 4), dtype=np.uint8))
    deep = _png(tmp_path / "deep.png", rng.integers(0, 65535, (24, 24), dtype=np.uint16))
    pal = tmp_path / "pal.png"
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).convert("P").save(pal)
    jpg = tmp_path / "x.jpg"
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(jpg)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not a png at all, but long enough to read a header from")
    for odd in (rgba, deep, str(pal), str(jpg), str(fake), str(tmp_path / "missing.png")):
        assert not native_png_eligible([*pngs, odd], 24), odd
    assert not native_png_eligible([], 24)


def test_damaged_png_falls_back_and_is_marked_not_ok(tmp_path, pngs):
    broken = Path(tmp_path / "broken.png")
    data = Path(pngs[0]).read_bytes()
    broken.write_bytes(data[:60])  # a valid header, then the file ends
    paths = [*pngs, str(broken)]
    assert native_png_eligible(paths, 24)  # the header alone looks fine
    images, ok = decode_all(paths, 24)
    assert ok.tolist() == [True] * len(pngs) + [False]
    np.testing.assert_array_equal(images[0], load_image(pngs[0]).rgb)


def test_predict_paths_survives_a_damaged_png(tmp_path, pngs):
    import keras

    from pipeline.backbones import build_classifier
    from pipeline.predict import predict_paths

    broken = Path(tmp_path / "broken.png")
    broken.write_bytes(Path(pngs[1]).read_bytes()[:60])
    keras.utils.set_random_seed(0)
    model = build_classifier("SmallCNN", 24, 2, weights=None)
    result = predict_paths(model, [*pngs, str(broken)], batch_size=4)
    assert result.ok.tolist() == [True] * len(pngs) + [False]
    assert np.isnan(result.probs[-1]).all() and np.isfinite(result.probs[:-1]).all()
    direct = model(np.stack([load_image(p).rgb for p in pngs]).astype(np.float32), training=False).numpy()
    np.testing.assert_allclose(result.probs[:-1], direct, atol=1e-5)

"""Thresholding, region statistics, Dice/IoU and ultrasound clean-up on images whose answer is known by construction."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline import segment as sg

DDTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "thyroid-ddti"


# ---------------------------------------------------------------- synthetic ultrasound frames


def _speckle(rng: np.random.Generator, shape: tuple[int, int], mean: float = 90.0) -> np.ndarray:
    """Rayleigh speckle with the given mean, slightly correlated like a real B-mode image."""
    sig = mean / np.sqrt(np.pi / 2)
    return cv2.GaussianBlur(rng.rayleigh(sig, shape), (0, 0), 1.2)


def ultrasound_frame(kind: str = "rect", seed: int = 0, h: int = 480, w: int = 640):
    """(rgb, true bbox, text layer, scan-region mask, protected tissue mask) of a scanner screenshot.

    A scan region (rectangle or fan) of speckle with an anechoic nodule and a blurry bright echo line,
    inside a near-black frame that carries white text, a gray-scale bar and a coloured dot; white text
    and two "+" calipers are burned into the scan region too.
    """
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 3, (h, w)).astype(np.float64)  # the frame: black with a little noise
    region = np.zeros((h, w), np.uint8)
    if kind == "rect":
        region[60:420, 150:520] = 1
    else:
        cv2.ellipse(region, (330, 10), (440, 440), 0, 45, 135, 1, -1)
        cv2.ellipse(region, (330, 10), (40, 40), 0, 0, 360, 0, -1)
    yy, xx = np.mgrid[:h, :w]
    tissue = _speckle(rng, (h, w))
    tissue *= np.where(((xx - 330) / 60) ** 2 + ((yy - 250) / 40) ** 2 < 1, 0.15, 1.0)
    echo = np.exp(-((yy - 150 - 0.1 * (xx - 300)) ** 2) / (2 * 2.5**2)) * 200 * (abs(xx - 330) < 120)
    img = np.where(region > 0, tissue + echo, img)
    gray = np.clip(img, 0, 255).astype(np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    text = np.zeros((h, w), np.uint8)
    cv2.putText(text, "GE LOGIQ 7.5MHz", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 255, 2, cv2.LINE_AA)
    cv2.putText(text, "THY R", (170, 100), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 1, cv2.LINE_AA)
    cv2.putText(text, "D 1.23cm", (530, 460), cv2.FONT_HERSHEY_PLAIN, 1.0, 255, 1, cv2.LINE_AA)
    for cx, cy in ((280, 250), (380, 250)):  # caliper "+" markers at the nodule's edges
        cv2.line(text, (cx - 5, cy), (cx + 5, cy), 255, 1)
        cv2.line(text, (cx, cy - 5), (cx, cy + 5), 255, 1)
    bar = np.zeros((h, w), np.uint8)
    bar[120:360, 30:44] = np.linspace(255, 0, 240)[:, None].astype(np.uint8)
    rgb = np.maximum(rgb, bar[:, :, None])
    rgb = np.maximum(rgb, text[:, :, None]).astype(np.uint8)
    cv2.circle(rgb, (480, 380), 4, (255, 220, 0), -1)
    x, y, bw, bh = cv2.boundingRect(region)
    echo_mask = (echo > 100) & (region > 0)
    return np.ascontiguousarray(rgb), (x, y, x + bw, y + bh), text, region, echo_mask


@pytest.fixture(scope="module", params=["rect", "sector"])
def frame(request):
    return ultrasound_frame(request.param)


# ---------------------------------------------------------------- thresholding


def two_level(low: int = 40, high: int = 200) -> np.ndarray:
    img = np.full((40, 60), low, np.uint8)
    img[10:30, 20:50] = high
    return img


@pytest.mark.parametrize("method", ["otsu", "triangle"])
def test_automatic_threshold_separates_two_levels(method):
    img = two_level()
    mask, used = sg.threshold_mask(img, method)
    assert 40 <= used < 200
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask > 0, img == 200)


def test_global_threshold_is_strictly_greater_and_invert_flips():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    mask, used = sg.threshold_mask(img, "global", value=100)
    assert used == 100
    np.testing.assert_array_equal(mask > 0, img > 100)
    inv, _ = sg.threshold_mask(img, "global", value=100, invert=True)
    np.testing.assert_array_equal(inv > 0, img <= 100)


def test_rgb_input_is_converted_and_blur_even_size_rounds_up():
    rgb = np.repeat(two_level()[:, :, None], 3, axis=2)
    mask, used = sg.threshold_mask(rgb, "otsu", blur=4)
    assert 40 <= used < 200
    assert (mask[15:25, 25:45] > 0).all() and (mask[:5] == 0).all()


def test_adaptive_finds_local_spot_on_a_gradient():
    # a ramp defeats a global threshold; the spot is brighter than its neighbourhood
    img = np.tile(np.linspace(20, 220, 100).astype(np.uint8), (60, 1))
    img[25:35, 45:55] = np.clip(img[25:35, 45:55].astype(int) + 60, 0, 255).astype(np.uint8)
    for method in ("adaptive_mean", "adaptive_gaussian"):
        mask, used = sg.threshold_mask(img, method, block_size=31, c=-20)
        assert used is None
        assert (mask[27:33, 47:53] > 0).all()
        assert (mask[:15] == 0).all()


def test_morphology_open_removes_specks_and_close_fills_holes():
    img = np.zeros((50, 50), np.uint8)
    img[10:40, 10:40] = 255
    img[25, 25] = 0  # a one-pixel hole
    img[3, 45] = 255  # a one-pixel speck
    raw, _ = sg.threshold_mask(img, "global", value=128)
    assert raw[3, 45] and not raw[25, 25]
    opened, _ = sg.threshold_mask(img, "global", value=128, morph="open", morph_size=3)
    assert not opened[3, 45]
    closed, _ = sg.threshold_mask(img, "global", value=128, morph="close", morph_size=3)
    assert closed[25, 25]
    both, _ = sg.threshold_mask(img, "global", value=128, morph="open_close", morph_size=3)
    assert both[25, 25] and not both[3, 45]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "kmeans"}, "`method`.*kmeans"),
        ({"method": "global", "value": 300}, "`value`.*300"),
        ({"method": "adaptive_mean", "block_size": 10}, "`block_size`.*odd.*10"),
        ({"method": "adaptive_mean", "block_size": 1}, "`block_size`"),
        ({"morph": "dilate"}, "`morph`.*dilate"),
        ({"blur": -1}, "`blur`"),
        ({"morph_size": 0}, "`morph_size`"),
    ],
)
def test_bad_arguments_name_argument_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sg.threshold_mask(two_level(), **kwargs)


def test_to_gray_accepts_common_shapes_and_rejects_others():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    assert sg.to_gray(rgb).shape == (4, 5)
    assert sg.to_gray(rgb)[0, 0] == 76  # ITU-R 601 luma of pure red
    assert sg.to_gray(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5)
    assert sg.to_gray(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5)
    assert sg.to_gray(np.linspace(0, 1, 20).reshape(4, 5)).max() == 255  # floats are scaled
    with pytest.raises(ValueError, match="`rgb`.*shape \\(4, 5, 2\\)"):
        sg.to_gray(np.zeros((4, 5, 2), np.uint8))


# ---------------------------------------------------------------- Dice / IoU


def test_dice_and_iou_on_known_overlap():
    a = np.zeros((10, 10), np.uint8)
    b = np.zeros((10, 10), np.uint8)
    a[0:4, 0:5] = 255  # 20 px
    b[2:6, 0:5] = 1  # 20 px, 10 px shared
    assert sg.dice(a, b) == pytest.approx(2 * 10 / 40)
    assert sg.iou(a, b) == pytest.approx(10 / 30)
    assert sg.dice(a, a) == 1.0 and sg.iou(a, a) == 1.0
    assert sg.dice(a, np.zeros_like(a)) == 0.0 and sg.iou(a, np.zeros_like(a)) == 0.0


def test_both_empty_is_perfect_agreement():
    empty = np.zeros((5, 5), bool)
    assert sg.dice(empty, empty) == 1.0
    assert sg.iou(empty, empty) == 1.0


def test_shape_mismatch_names_argument_and_shapes():
    with pytest.raises(ValueError, match="`true_mask`.*\\(4, 4\\).*\\(4, 5\\)"):
        sg.dice(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="`true_mask`"):
        sg.iou(np.zeros((4, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="`pred_mask`"):
        sg.dice(np.zeros((4,)), np.zeros((4, 4)))


def test_rgb_mask_thumbnails_are_binarised_at_half_intensity():
    soft = np.zeros((6, 6, 3), np.uint8)
    soft[:3] = 200
    soft[3] = 100  # an anti-aliased edge row below half intensity
    np.testing.assert_array_equal(sg.as_mask(soft), np.arange(6)[:, None].repeat(6, 1) < 3)
    assert sg.fit_mask(soft, (12, 12)).shape == (12, 12)


# ---------------------------------------------------------------- region statistics


def test_region_stats_on_drawn_circles():
    gray = np.full((100, 100), 50, np.uint8)
    mask = np.zeros((100, 100), np.uint8)
    cv2.circle(mask, (30, 30), 10, 255, -1)
    cv2.circle(mask, (70, 60), 5, 255, -1)
    gray[mask > 0] = 150
    s = sg.region_stats(mask, gray)
    big, small = int((mask[:, :50] > 0).sum()), int((mask[:, 50:] > 0).sum())
    assert s["n_regions"] == 2
    assert s["area_px"] == big + small
    assert s["area_fraction"] == pytest.approx((big + small) / 10_000)
    assert s["largest_area_px"] == big
    assert abs(big - np.pi * 10**2) < 0.1 * np.pi * 10**2
    assert s["mean_inside"] == pytest.approx(150) and s["mean_outside"] == pytest.approx(50)
    table = s["regions"]
    assert list(table.columns) == list(sg.REGION_COLUMNS)
    assert list(table["area_px"]) == [big, small]
    assert table.loc[0, "centroid_x"] == pytest.approx(30, abs=0.01)
    assert table.loc[1, "centroid_y"] == pytest.approx(60, abs=0.01)
    assert (table["x"][0], table["width"][0]) == (20, 21)


def test_region_stats_empty_and_full_masks_and_min_area():
    gray = np.full((10, 10), 7, np.uint8)
    empty = sg.region_stats(np.zeros((10, 10), np.uint8), gray)
    assert (empty["area_px"], empty["n_regions"], empty["largest_area_px"]) == (0, 0, 0)
    assert np.isnan(empty["mean_inside"]) and empty["mean_outside"] == 7
    full = sg.region_stats(np.ones((10, 10), np.uint8), gray)
    assert full["n_regions"] == 1 and np.isnan(full["mean_outside"])
    specks = np.zeros((10, 10), np.uint8)
    specks[0, 0] = specks[5, 5] = 1
    specks[8:10, 8:10] = 1
    assert sg.region_stats(specks, min_area=2)["n_regions"] == 1
    assert np.isnan(sg.region_stats(specks)["regions"]["mean_intensity"]).all()  # no gray given
    with pytest.raises(ValueError, match="`gray`.*\\(10, 10\\)"):
        sg.region_stats(specks, np.zeros((5, 5), np.uint8))


def test_contour_overlay_draws_only_on_the_outline():
    rgb = np.zeros((40, 40, 3), np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 255
    out = sg.contour_overlay(rgb, mask, color=(255, 0, 0), thickness=1)
    assert out.shape == rgb.shape and not rgb.any()  # the input is untouched
    red = out[..., 0] == 255
    assert red[10, 10:30].all() and red[29, 10:30].all() and not red[20, 20] and not red[0, 0]
    with pytest.raises(ValueError, match="`mask`"):
        sg.contour_overlay(rgb, mask[:20])


# ---------------------------------------------------------------- ultrasound clean-up


def test_crop_finds_the_scan_region_within_a_few_pixels(frame):
    rgb, truth, _, _, _ = frame
    crop, bbox, notes = sg.crop_ultrasound(rgb)
    assert max(abs(a - b) for a, b in zip(bbox, truth)) <= 3, (bbox, truth)
    x0, y0, x1, y1 = bbox
    assert crop.shape == (y1 - y0, x1 - x0, 3)
    np.testing.assert_array_equal(crop, rgb[y0:y1, x0:x1])
    assert "cropped" in notes[0]


def test_crop_ignores_side_bar_and_border_text_even_when_larger_than_the_margin():
    rgb, truth, _, _, _ = ultrasound_frame("rect", seed=3)
    # a thick bright side bar, bigger than the text, far from the region
    rgb[100:400, 560:600] = 230
    _, bbox, _ = sg.crop_ultrasound(rgb)
    assert max(abs(a - b) for a, b in zip(bbox, truth)) <= 3


def test_crop_is_a_no_op_without_a_dark_frame():
    rng = np.random.default_rng(1)
    gray = np.clip(_speckle(rng, (200, 240)), 0, 255).astype(np.uint8)
    gray[60:140, 0:120] = (gray[60:140, 0:120] * 0.15).astype(np.uint8)  # a dark cyst touching the edge
    crop, bbox, notes = sg.crop_ultrasound(gray)
    assert bbox == (0, 0, 240, 200) and crop.shape == (200, 240, 3)
    assert "uncropped" in notes[0]


def test_crop_handles_black_and_tiny_images():
    _, bbox, notes = sg.crop_ultrasound(np.zeros((50, 60, 3), np.uint8))
    assert bbox == (0, 0, 60, 50) and "no scan region" in notes[0]
    _, bbox, notes = sg.crop_ultrasound(np.zeros((8, 8), np.uint8))
    assert bbox == (0, 0, 8, 8) and "too small" in notes[0]


def test_annotations_removed_and_tissue_kept(frame):
    rgb, _, text, region, echo = frame
    clean, removed = sg.remove_annotations(rgb)
    text_px = text >= 128
    assert removed.dtype == np.uint8 and removed.shape == text.shape
    assert (removed[text_px] > 0).all()
    gray = sg.to_gray(clean)
    assert gray[text_px].max() < 160  # the text is gone, filled from the surroundings (speckle or black)
    # the coloured dot is gone
    assert (sg.to_gray(clean)[376:385, 476:485] < 150).all() and (removed[380, 480] > 0)
    # the blurry bright echo (tissue) is not an annotation
    near_text = cv2.dilate(text, np.ones((9, 9), np.uint8)) > 0
    assert not (removed[echo & ~near_text] > 0).any()
    # nothing else inside the scan region is touched beyond the text, the dot and their fringes
    stray = (removed > 0) & (region > 0) & ~near_text
    stray[370:391, 470:491] = False
    assert stray.sum() == 0
    np.testing.assert_array_equal(clean[removed == 0], rgb[removed == 0])


def test_small_solid_bright_specks_are_kept_as_tissue():
    rng = np.random.default_rng(2)
    gray = np.clip(_speckle(rng, (120, 120)), 0, 255).astype(np.uint8)
    cv2.circle(gray, (40, 40), 2, 250, -1)  # a calcification-like speck
    cv2.rectangle(gray, (80, 80), (86, 86), 250, -1)  # a solid bright block
    clean, removed = sg.remove_annotations(gray)
    assert not removed.any()
    np.testing.assert_array_equal(clean, np.repeat(gray[:, :, None], 3, axis=2))


def test_colour_images_keep_their_colour():
    # an H&E-like colour image: colour is content there, not a marker
    rng = np.random.default_rng(4)
    rgb = np.empty((80, 80, 3), np.uint8)
    rgb[:] = (230, 180, 215)
    for _ in range(15):
        c = rng.integers(5, 75, 2)
        cv2.circle(rgb, (int(c[0]), int(c[1])), int(rng.integers(2, 6)), (90, 50, 150), -1)
    clean, removed = sg.remove_annotations(rgb)
    assert not removed.any()
    np.testing.assert_array_equal(clean, rgb)


def test_apply_crop_modes():
    rgb, truth, text, _, _ = ultrasound_frame("rect")
    assert sg.apply_crop(rgb, "none") is rgb
    out = sg.apply_crop(rgb, "ultrasound")
    x0, y0, x1, y1 = truth
    assert abs(out.shape[0] - (y1 - y0)) <= 3 and abs(out.shape[1] - (x1 - x0)) <= 3
    _, (cx0, cy0, cx1, cy1), _ = sg.crop_ultrasound(rgb)
    assert out.shape == (cy1 - cy0, cx1 - cx0, 3)
    assert sg.to_gray(out)[text[cy0:cy1, cx0:cx1] >= 128].max() < 160  # "THY R" and calipers are gone
    marks = cv2.dilate(text, np.ones((7, 7), np.uint8)) > 0
    marks[370:391, 470:491] = True  # the coloured dot
    untouched = ~marks[cy0:cy1, cx0:cx1]
    np.testing.assert_array_equal(out[untouched], rgb[cy0:cy1, cx0:cx1][untouched])
    same = sg.apply_crop(rgb, "ultrasound", remove_marks=False)
    np.testing.assert_array_equal(same, rgb[cy0:cy1, cx0:cx1])
    with pytest.raises(ValueError, match="`mode`.*'sector'"):
        sg.apply_crop(rgb, "sector")


def test_draw_box_marks_the_box_edges():
    out = sg.draw_box(np.zeros((20, 20, 3), np.uint8), (2, 3, 12, 15), color=(0, 255, 0), thickness=1)
    assert out[3, 2, 1] == 255 and out[14, 11, 1] == 255 and out[8, 6, 1] == 0


def test_import_has_no_tensorflow():
    import subprocess
    import sys

    code = "import sys, pipeline.segment; print('tensorflow' in sys.modules)"
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert res.stdout.strip() == "False"


# ---------------------------------------------------------------- real thyroid ultrasound (optional)


@pytest.mark.realdata
@pytest.mark.skipif(not DDTI.is_dir(), reason="../shared/data/thyroid-ddti is absent")
def test_ddti_cropped_views_survive_the_clean_up():
    files = sorted(DDTI.glob("*.png"))[::6]
    assert files
    uncropped, changed = 0, []
    for path in files:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        _, bbox, _ = sg.crop_ultrasound(gray)
        h, w = gray.shape
        uncropped += bbox == (0, 0, w, h)
        # whatever is cropped away is a thin strip (a text band at most), never most of the view
        assert (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) >= 0.5 * h * w, path.name
        _, removed = sg.remove_annotations(gray)
        changed.append((removed > 0).mean())
    assert uncropped >= 0.95 * len(files)
    assert np.median(changed) == 0.0 and max(changed) < 0.1

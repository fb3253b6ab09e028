"""Thresholding / segmentation preview and ultrasound clean-up (NumPy + OpenCV only, no TensorFlow).

Two groups of functions:

* **Thresholding**: :func:`threshold_mask` (global, Otsu, triangle, adaptive; optional blur and
  morphology), :func:`region_stats`, :func:`contour_overlay`, and :func:`dice` / :func:`iou` against a
  ground-truth mask.
* **Ultrasound clean-up**: :func:`crop_ultrasound` (auto-crop to the scan region inside the dark frame,
  leaving side bars and border text out) and :func:`remove_annotations` (burned-in text, calipers and
  coloured markers, inpainted). One project's models collapsed because training images were cropped
  and test images were not; :func:`apply_crop` is the hook that lets ingestion apply the same clean-up
  to every evaluation set.

Masks are ``uint8`` arrays with values 0 and 255 (what OpenCV draws and PNG stores); every function
that takes a mask accepts any array whose non-zero pixels are the foreground.
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
import pandas as pd

THRESHOLD_METHODS = ("global", "otsu", "triangle", "adaptive_mean", "adaptive_gaussian")
MORPH_OPS = ("none", "open", "close", "open_close")
CROP_MODES = ("none", "ultrasound")
REGION_COLUMNS = ("region", "area_px", "x", "y", "width", "height", "centroid_x", "centroid_y",
                  "mean_intensity")

# Bounding box convention everywhere in this module: (x0, y0, x1, y1) with exclusive ends,
# so that ``rgb[y0:y1, x0:x1]`` is the box.
BBox = tuple[int, int, int, int]


# ============================================================================ conversions

def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Gray uint8 HxW from a gray (HxW, HxWx1), RGB or RGBA array; other dtypes are scaled to 8 bits."""
    arr = np.asarray(rgb)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or 0 in arr.shape[:2]:
        raise ValueError("Invalid value for argument `rgb`. Expected a non-empty HxW, HxWx1, HxWx3 or HxWx4 "
                         f"array. Received: shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        from pipeline.preprocess import decode_array  # lazy: only odd dtypes need the normaliser
        arr = decode_array(arr).rgb
    if arr.ndim == 2:
        return np.ascontiguousarray(arr)
    return cv2.cvtColor(np.ascontiguousarray(arr[:, :, :3]), cv2.COLOR_RGB2GRAY)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """RGB uint8 HxWx3 from a gray or RGB(A) uint8 array (a copy; the input is never modified)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return cv2.cvtColor(to_gray(arr), cv2.COLOR_GRAY2RGB)
    if arr.ndim == 3 and arr.shape[2] in (3, 4) and 0 not in arr.shape[:2]:
        if arr.dtype != np.uint8:
            from pipeline.preprocess import decode_array
            return decode_array(arr).rgb
        return np.ascontiguousarray(arr[:, :, :3]).copy()
    raise ValueError("Invalid value for argument `image`. Expected a non-empty HxW or HxWx3/4 array. "
                     f"Received: shape {tuple(arr.shape)}")


def as_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """Boolean HxW foreground of a mask given as bool, 0/1, 0/255, or an RGB(A) mask image (gray >= 128)."""
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[:, :, 0] if arr.shape[2] == 1 else to_gray(arr) if arr.dtype == np.uint8 else arr[:, :, 0]
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a non-empty HxW mask. "
                         f"Received: shape {tuple(np.asarray(mask).shape)}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype == np.uint8 and arr.max(initial=0) > 1:
        return arr >= 128  # resized (anti-aliased) mask thumbnails have soft edges
    return arr > 0


# ============================================================================ thresholding

def threshold_mask(gray: np.ndarray, method: str = "otsu", value: float = 128, block_size: int = 31,
                   c: float = 5, invert: bool = False, blur: int = 0, morph: str = "none",
                   morph_size: int = 3) -> tuple[np.ndarray, float | None]:
    """Binary mask (uint8 0/255, foreground = brighter than the threshold) and the threshold used (None if adaptive)."""
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"Invalid value for argument `method`. Expected one of {THRESHOLD_METHODS}. "
                         f"Received: {method!r}")
    if morph not in MORPH_OPS:
        raise ValueError(f"Invalid value for argument `morph`. Expected one of {MORPH_OPS}. Received: {morph!r}")
    _check_int(blur, "blur", minimum=0)
    _check_int(morph_size, "morph_size", minimum=1)
    g = to_gray(gray)
    if blur > 1:
        k = int(blur) | 1  # Gaussian kernels must be odd: 4 -> 5
        g = cv2.GaussianBlur(g, (k, k), 0)
    used: float | None
    flag = cv2.THRESH_BINARY_INV if invert else cv2.THRESH_BINARY
    if method == "global":
        if not (isinstance(value, (int, float, np.integer, np.floating)) and 0 <= float(value) <= 255):
            raise ValueError(f"Invalid value for argument `value`. Expected a number in [0, 255]. Received: {value!r}")
        used, mask = cv2.threshold(g, float(value), 255, flag)
    elif method in ("otsu", "triangle"):
        extra = cv2.THRESH_OTSU if method == "otsu" else cv2.THRESH_TRIANGLE
        used, mask = cv2.threshold(g, 0, 255, flag | extra)
    else:
        _check_int(block_size, "block_size", minimum=3)
        if block_size % 2 == 0:
            raise ValueError(f"Invalid value for argument `block_size`. Expected an odd int >= 3. "
                             f"Received: {block_size!r}")
        adaptive = cv2.ADAPTIVE_THRESH_MEAN_C if method == "adaptive_mean" else cv2.ADAPTIVE_THRESH_GAUSSIAN_C
        mask = cv2.adaptiveThreshold(g, 255, adaptive, flag, int(block_size), float(c))
        used = None
    if morph != "none" and morph_size > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(morph_size), int(morph_size)))
        if morph in ("open", "open_close"):
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        if morph in ("close", "open_close"):
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    return np.ascontiguousarray(mask, dtype=np.uint8), (None if used is None else float(used))


def contour_overlay(rgb: np.ndarray, mask: np.ndarray, color: Sequence[int] = (255, 40, 40),
                    thickness: int = 1, fill_alpha: float = 0.0) -> np.ndarray:
    """A copy of ``rgb`` with the outlines (outer and holes) of ``mask`` drawn, optionally filled translucently."""
    out = to_rgb(rgb)
    fg = as_mask(mask)
    if fg.shape != out.shape[:2]:
        raise ValueError(f"Invalid value for argument `mask`. Expected shape {out.shape[:2]} (the image's). "
                         f"Received: {fg.shape}")
    _check_int(thickness, "thickness", minimum=1)
    col = tuple(int(v) for v in color)
    if len(col) != 3:
        raise ValueError(f"Invalid value for argument `color`. Expected an (r, g, b) triple. Received: {color!r}")
    if fill_alpha > 0:
        tint = np.empty_like(out)
        tint[:] = col
        blended = cv2.addWeighted(out, 1.0 - float(fill_alpha), tint, float(fill_alpha), 0)
        out[fg] = blended[fg]
    contours, _ = cv2.findContours(fg.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, col, int(thickness), lineType=cv2.LINE_8)
    return out


def comparison_overlay(rgb: np.ndarray, pred_mask: np.ndarray, true_mask: np.ndarray) -> np.ndarray:
    """The image with the ground truth outlined in green and the prediction in red (overlap reads yellow)."""
    out = contour_overlay(rgb, true_mask, color=(40, 220, 40), thickness=1, fill_alpha=0.25)
    return contour_overlay(out, pred_mask, color=(255, 40, 40), thickness=1)


def region_stats(mask: np.ndarray, gray: np.ndarray | None = None, min_area: int = 1) -> dict[str, Any]:
    """Area (px and fraction), region count, largest region, mean intensity inside/outside, per-region table."""
    fg = as_mask(mask)
    _check_int(min_area, "min_area", minimum=1)
    g = None
    if gray is not None:
        g = to_gray(gray)
        if g.shape != fg.shape:
            raise ValueError(f"Invalid value for argument `gray`. Expected shape {fg.shape} (the mask's). "
                             f"Received: {g.shape}")
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= min_area) + 1
    keep = keep[np.argsort(-stats[keep, cv2.CC_STAT_AREA], kind="stable")]
    if g is not None and n > 1:
        sums = np.bincount(labels.ravel(), weights=g.ravel().astype(np.float64), minlength=n)
        means = sums[keep] / stats[keep, cv2.CC_STAT_AREA]
    else:
        means = np.full(keep.size, np.nan)
    table = pd.DataFrame({
        "region": np.arange(1, keep.size + 1, dtype=np.int64),
        "area_px": stats[keep, cv2.CC_STAT_AREA].astype(np.int64),
        "x": stats[keep, cv2.CC_STAT_LEFT].astype(np.int64),
        "y": stats[keep, cv2.CC_STAT_TOP].astype(np.int64),
        "width": stats[keep, cv2.CC_STAT_WIDTH].astype(np.int64),
        "height": stats[keep, cv2.CC_STAT_HEIGHT].astype(np.int64),
        "centroid_x": centroids[keep, 0].astype(np.float64),
        "centroid_y": centroids[keep, 1].astype(np.float64),
        "mean_intensity": np.asarray(means, dtype=np.float64),
    }, columns=list(REGION_COLUMNS))
    area = int(fg.sum())
    total = int(fg.size)
    inside = float(g[fg].mean()) if g is not None and area else float("nan")
    outside = float(g[~fg].mean()) if g is not None and area < total else float("nan")
    return {
        "area_px": area,
        "area_fraction": area / total,
        "n_regions": int(keep.size),
        "largest_area_px": int(table["area_px"].iloc[0]) if keep.size else 0,
        "mean_inside": inside,
        "mean_outside": outside,
        "regions": table,
    }


def dice(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|) of two masks of the same shape; 1.0 when both are empty."""
    a, b = _mask_pair(pred_mask, true_mask)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def iou(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """Intersection over union |A∩B| / |A∪B| of two masks of the same shape; 1.0 when both are empty."""
    a, b = _mask_pair(pred_mask, true_mask)
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def fit_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A ground-truth mask brought to ``shape`` (H, W) by nearest-neighbour resizing, as uint8 0/255."""
    fg = as_mask(mask).astype(np.uint8) * 255
    if fg.shape != tuple(shape):
        fg = cv2.resize(fg, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_NEAREST)
    return fg


def gray_histogram(gray: np.ndarray) -> np.ndarray:
    """Counts of each gray level 0..255 (length 256)."""
    return np.bincount(to_gray(gray).ravel(), minlength=256)[:256]


# ============================================================================ ultrasound clean-up

def crop_ultrasound(rgb: np.ndarray, dark_level: int | None = None,
                    min_fraction: float = 0.2) -> tuple[np.ndarray, BBox, list[str]]:
    """Crop to the scan region (largest bright region inside a dark frame); returns (crop, bbox x0,y0,x1,y1, notes).

    Border text, logos and side bars are separate from the scan region once thin strokes are opened
    away, so the largest component is the scan sector or rectangle. An image without a dark frame
    (an already cropped view) is returned whole, as is one where the region found is implausibly small.
    """
    img = to_rgb(rgb)
    gray = to_gray(img)
    h, w = gray.shape
    full: BBox = (0, 0, w, h)
    if not 0.0 < float(min_fraction) <= 1.0:
        raise ValueError(f"Invalid value for argument `min_fraction`. Expected a number in (0, 1]. "
                         f"Received: {min_fraction!r}")
    if min(h, w) < 16:
        return img, full, ["image too small to look for a scan region; left uncropped"]
    level = _frame_level(gray) if dark_level is None else int(dark_level)
    bright = (gray > level).astype(np.uint8)
    k = _odd(max(3, round(min(h, w) / 80)))
    close_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    # Closing fills speckle holes (dark pixels inside tissue); opening then drops thin strokes
    # (text, caliper lines, dotted scales) so they cannot bridge the frame and the scan region.
    solid = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, close_k)
    k_open = _odd(max(5, round(min(h, w) / 60)))
    open_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k_open, k_open))
    solid = cv2.morphologyEx(solid, cv2.MORPH_OPEN, open_k)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    if n <= 1:
        return img, full, ["no scan region found (the image is dark everywhere); left uncropped"]
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh = (int(v) for v in stats[best, :4])
    bbox: BBox = (x, y, x + bw, y + bh)
    if bbox == full:
        return img, full, ["no dark frame around the image; left uncropped"]
    if bw * bh < float(min_fraction) * h * w:
        return img, full, [f"largest bright region covers only {bw * bh / (h * w):.0%} of the frame "
                           f"(< {float(min_fraction):.0%}); left uncropped"]
    outside = np.ones((h, w), bool)
    outside[y:y + bh, x:x + bw] = False
    dark_outside = float((gray[outside] <= level).mean())
    if dark_outside < 0.5:
        # what would be cut away is mostly image content, not a frame: keep the image whole
        return img, full, [f"the area outside the brightest region is not a dark frame "
                           f"({dark_outside:.0%} dark); left uncropped"]
    notes = [f"cropped to the scan region x {x}..{x + bw - 1}, y {y}..{y + bh - 1} "
             f"({bw}x{bh} of {w}x{h}, frame level {level})"]
    return np.ascontiguousarray(img[y:y + bh, x:x + bw]), bbox, notes


def remove_annotations(rgb: np.ndarray, white_level: int = 200, contrast: float = 120.0, min_area: int = 10,
                       max_area_fraction: float = 0.01, mark_level: int = 60, colour_saturation: int = 60,
                       inpaint_radius: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Remove burned-in text, calipers and coloured markers; returns (inpainted rgb, uint8 0/255 mask of what was removed).

    Three kinds of marks are found. (1) On the black frame or side bars: any small component brighter
    than ``mark_level`` whose surroundings are black (nothing there is tissue). (2) On tissue: a
    component brighter than ``white_level`` that is sharp (``contrast`` above its background, and
    already down to it two pixels out: rendered strokes have hard edges, echoes fade out) and
    stroke-like (at least three stroke widths long), so solid bright specks such as calcifications
    stay. (3) Any small coloured component of an otherwise gray image: B-mode tissue is gray.
    """
    img = to_rgb(rgb)
    gray = to_gray(img)
    h, w = gray.shape
    max_area = max(int(min_area), int(float(max_area_fraction) * h * w))
    black = _frame_level(gray) - 2
    marks = np.zeros((h, w), bool)

    # (1) marks on black: the frame's text, scales and icons
    n, labels, stats, _ = cv2.connectedComponentsWithStats((gray >= int(mark_level)).astype(np.uint8), connectivity=8)
    if n > 1:
        area = stats[:, cv2.CC_STAT_AREA]
        near, far = _ring_means(gray, labels, n, 2), _ring_means(gray, labels, n, 5)
        # single bright pixels in very dark tissue are speckle, not text: marks have a few pixels at least
        on_black = (far <= black) & (near <= black + 12) & (area >= 3) & (area <= 5 * max_area)
        on_black[0] = False
        marks |= on_black[labels]

    # (2) sharp bright strokes on tissue: calipers, text typed over the image
    bright = (gray >= int(white_level)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    if n > 1:
        area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
        long_side = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
        comp_mean = np.bincount(labels.ravel(), weights=gray.ravel().astype(np.float64), minlength=n) / np.maximum(area, 1)
        near, far = _ring_means(gray, labels, n, 2), _ring_means(gray, labels, n, 5)
        step = comp_mean - far
        sharp = (step >= float(contrast)) & (comp_mean - near >= 0.85 * step)
        # stroke width = twice the largest inscribed radius; a stroke is at least 3 widths long
        inscribed = np.zeros(n)
        inside = labels > 0
        np.maximum.at(inscribed, labels[inside], cv2.distanceTransform(bright, cv2.DIST_L2, 3)[inside])
        stroke = long_side >= 3 * 2 * inscribed
        is_mark = sharp & stroke & (area >= int(min_area)) & (area <= max_area)
        is_mark[0] = False
        marks |= is_mark[labels]

    # (3) coloured marks (B-mode tissue is gray)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    coloured = ((hsv[:, :, 1] >= int(colour_saturation)) & (hsv[:, :, 2] >= 60)).astype(np.uint8)
    # only in a gray (B-mode) image is colour a mark; a colour image (histology, skin, Doppler) keeps it
    n, labels, stats, _ = cv2.connectedComponentsWithStats(coloured, connectivity=8) \
        if coloured.mean() <= 0.02 else (0, None, None, None)
    if n > 1:
        small = (stats[:, cv2.CC_STAT_AREA] <= max_area) & (stats[:, cv2.CC_STAT_AREA] >= 2)
        small[0] = False
        marks |= small[labels]

    if not marks.any():
        return img, np.zeros((h, w), np.uint8)
    # grow by two pixels: anti-aliased and JPEG-smeared edges of the strokes belong to the marks too
    removed = cv2.dilate(marks.astype(np.uint8) * 255, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    return _inpaint(img, removed, int(inpaint_radius)), removed


def apply_crop(rgb: np.ndarray, mode: str = "none", remove_marks: bool = True) -> np.ndarray:
    """The ingest hook: ``"none"`` returns the image as is; ``"ultrasound"`` crops to the scan region, then removes burned-in marks."""
    if mode not in CROP_MODES:
        raise ValueError(f"Invalid value for argument `mode`. Expected one of {CROP_MODES}. Received: {mode!r}")
    if mode == "none":
        return rgb
    # Cropping first is cheaper: the frame's text is cut off instead of inpainted, and mark removal works
    # on the smaller image. Thick text close to the scan region can stay attached to it, so the cleaned
    # image is cropped once more (a no-op when nothing was attached).
    cropped = crop_ultrasound(rgb)[0]
    if not remove_marks:
        return cropped
    return crop_ultrasound(remove_annotations(cropped)[0])[0]


def draw_box(rgb: np.ndarray, bbox: BBox, color: Sequence[int] = (255, 200, 0), thickness: int = 2) -> np.ndarray:
    """A copy of ``rgb`` with the box (x0, y0, x1, y1; exclusive ends) drawn."""
    out = to_rgb(rgb)
    x0, y0, x1, y1 = (int(v) for v in bbox)
    cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), tuple(int(v) for v in color), int(thickness))
    return out


# ============================================================================ helpers

def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Invalid value for argument `{name}`. Expected an int >= {minimum}. Received: {value!r}")


def _odd(k: int) -> int:
    return int(k) | 1


def _mask_pair(pred_mask: np.ndarray, true_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = as_mask(pred_mask, "pred_mask")
    b = as_mask(true_mask, "true_mask")
    if a.shape != b.shape:
        raise ValueError(f"Invalid value for argument `true_mask`. Expected shape {a.shape} (the shape of "
                         f"`pred_mask`). Received: {b.shape}")
    return a, b


def _frame_level(gray: np.ndarray) -> int:
    """Gray level up to which a pixel can belong to the dark frame: just above the image's black."""
    # The frame of a scanner screenshot is black (JPEG adds a few levels of noise). Anechoic tissue
    # (cysts, deep attenuation) is dark too but, in real images, rarely below ~12, so the level is
    # capped low: a higher one cut cystic nodules out of already-cropped thyroid views.
    return int(min(int(gray.min()) + 10, 16))


def _inpaint(img: np.ndarray, removed: np.ndarray, radius: int) -> np.ndarray:
    """cv2.inpaint restricted to a padded box around each removed component (and to one channel when gray)."""
    gray_only = bool((img[:, :, 0] == img[:, :, 1]).all() and (img[:, :, 0] == img[:, :, 2]).all())
    src = np.ascontiguousarray(img[:, :, 0]) if gray_only else img
    n, _, stats, _ = cv2.connectedComponentsWithStats(removed, connectivity=8)
    h, w = removed.shape
    pad = radius + 2
    if n > 200:  # many scattered marks: one call over the whole image is cheaper than many small ones
        out = cv2.inpaint(src, removed, float(radius), cv2.INPAINT_TELEA)
    else:
        out = src.copy()
        for x, y, bw, bh, _ in stats[1:]:
            x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(w, x + bw + pad), min(h, y + bh + pad)
            # the box's mask holds every removed pixel in it, so other marks never act as a source
            roi_mask = removed[y0:y1, x0:x1]
            patch = cv2.inpaint(np.ascontiguousarray(src[y0:y1, x0:x1]), roi_mask, float(radius), cv2.INPAINT_TELEA)
            fill = roi_mask > 0
            out[y0:y1, x0:x1][fill] = patch[fill]
    return cv2.cvtColor(out, cv2.COLOR_GRAY2RGB) if gray_only else out


def _ring_means(gray: np.ndarray, labels: np.ndarray, n: int, distance: int) -> np.ndarray:
    """Mean gray level of the ring ``distance`` pixels (chessboard) around each labelled component (index 0: unused)."""
    fg = (labels > 0).astype(np.uint8)
    inner = cv2.dilate(fg, np.ones((2 * distance - 1, 2 * distance - 1), np.uint8))
    outer = np.ones((2 * distance + 1, 2 * distance + 1), np.uint8)
    ring = (cv2.dilate(fg, outer) > 0) & (inner == 0)
    # labels grown by `distance` (gray dilation keeps the largest label where two grow into each other)
    grown = cv2.dilate(labels.astype(np.float32), outer).astype(np.int64)
    idx = grown[ring]
    sums = np.bincount(idx, weights=gray[ring].astype(np.float64), minlength=n)
    counts = np.bincount(idx, minlength=n)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)

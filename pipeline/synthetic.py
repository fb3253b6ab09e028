"""Embedded demo data: synthetic histology (IDC layout) and skin-lesion (HAM10000 layout) image sets.

Both sets are drawn with NumPy + OpenCV only, are fully determined by their seed, and save a
ground-truth mask next to every image (nuclei for histology, the lesion for skin), so the
segmentation preview can score itself.

The classes are made to overlap on purpose: every class-dependent property (nuclear size, density,
irregularity; lesion colour, border, size, dots, vessels) is drawn from a distribution whose mean
depends on the class and whose spread crosses the other classes, and the histology folder labels
carry label noise. Small CNNs therefore learn the task but do not saturate, so backbones differ.

Nothing happens on import; the public functions are ``make_histology``, ``make_lesions``,
``make_demo_sources`` and ``corner_evidence_image``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "HISTOLOGY_CLASSES",
    "LESION_CLASSES",
    "LESION_FREQUENCIES",
    "MARKER_FILE",
    "corner_evidence_image",
    "make_demo_sources",
    "make_histology",
    "make_lesions",
]

MARKER_FILE = ".complete"
LABEL_NOISE_FILE = ".label_noise.csv"  # the demo's injected label flips: sample_id, given_label, true_label
HISTOLOGY_CLASSES = ("0", "1")
# HAM10000 diagnosis codes, most to least frequent; frequencies less extreme than the real set
# (67% nv) so every class keeps enough lesions for a grouped, stratified split.
LESION_CLASSES = ("nv", "mel", "bkl", "bcc", "akiec", "vasc", "df")
LESION_FREQUENCIES = (0.45, 0.15, 0.14, 0.10, 0.06, 0.05, 0.05)
LESION_CSV_COLUMNS = ("image_id", "lesion_id", "dx", "age", "sex", "localization")
CORNERS = ("tl", "tr", "bl", "br")

# Optical-density vectors (RGB) of haematoxylin (Ruifrok & Johnston) and eosin (Macenko et al.).
_HEMATOXYLIN_OD = np.array([0.650, 0.704, 0.286])
_EOSIN_OD = np.array([0.216, 0.801, 0.558])


# --------------------------------------------------------------------------------------------- io
def _write_png(path: Path, image: np.ndarray) -> None:
    """Write an RGB (HxWx3) or single-channel uint8 array as PNG (imencode: safe for any path)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - imencode only fails on invalid arrays
        raise OSError(f"Could not encode PNG for {path}")
    path.write_bytes(buf.tobytes())


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"Invalid value for argument `{name}`. Expected an integer >= {minimum}. Received: {value!r}")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise in [-1, 1]-ish: a coarse random grid upsampled with bicubic interpolation."""
    grid = rng.standard_normal((cells, cells, channels)).astype(np.float32)
    up = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return up.reshape(size, size, channels) if channels > 1 else up.reshape(size, size)


def _radial_polygon(
    cx: float,
    cy: float,
    radius: float,
    aspect: float,
    angle: float,
    harmonics: np.ndarray,
    phases: np.ndarray,
    n_vertices: int,
) -> np.ndarray:
    """Vertices of a closed blob: an ellipse whose radius is modulated by cosine harmonics k=2,3,..."""
    theta = np.linspace(0.0, 2.0 * np.pi, n_vertices, endpoint=False)
    k = np.arange(2, 2 + len(harmonics))[:, None]
    modulation = 1.0 + (harmonics[:, None] * np.cos(k * theta[None, :] + phases[:, None])).sum(axis=0)
    r = radius * np.clip(modulation, 0.35, 2.0)
    x = r * np.cos(theta) * aspect
    y = r * np.sin(theta) / aspect
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def _fill(canvas: np.ndarray, points: np.ndarray, value: float, antialias: bool = False) -> None:
    """Fill a float polygon on a uint8 canvas with 1/16-pixel precision."""
    pts = np.round(points * 16.0).astype(np.int32)[None]
    cv2.fillPoly(canvas, pts, float(value), lineType=cv2.LINE_AA if antialias else cv2.LINE_8, shift=4)


# -------------------------------------------------------------------------------------- histology
def _patient_positive_fractions(rng: np.random.Generator, n_patients: int) -> np.ndarray:
    """Per-patient probability that an image is IDC: about half the patients benign-only, the rest mixed."""
    kind = rng.choice(3, size=n_patients, p=[0.50, 0.38, 0.12])
    mixed = rng.uniform(0.2, 0.8, size=n_patients)
    mostly_positive = rng.uniform(0.8, 1.0, size=n_patients)
    return np.where(kind == 0, 0.0, np.where(kind == 1, mixed, mostly_positive))


def _histology_image(
    rng: np.random.Generator, size: int, severity: float, stain: dict[str, np.ndarray | float]
) -> tuple[np.ndarray, np.ndarray]:
    """One H&E-like patch and its nuclei mask; `severity` in [0, 1] drives every nuclear feature."""
    scale = size / 64.0
    # Tissue: eosin density with stroma fibres and the occasional fat/lumen hole.
    eosin = 0.55 + 0.12 * _smooth_noise(rng, size, 5) + 0.05 * _smooth_noise(rng, size, 16)
    fibres = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = rng.uniform(-0.2, 1.2, 2) * size
        ang = rng.uniform(0, np.pi)
        length = rng.uniform(0.4, 1.0) * size
        x1, y1 = x0 + length * np.cos(ang), y0 + length * np.sin(ang)
        cv2.line(
            fibres,
            (int(x0), int(y0)),
            (int(x1), int(y1)),
            int(rng.integers(90, 200)),
            max(1, int(round(rng.uniform(0.6, 1.6) * scale))),
            cv2.LINE_AA,
        )
    eosin += 0.25 * cv2.GaussianBlur(fibres, (0, 0), 0.8 * scale).astype(np.float32) / 255.0
    holes = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.poisson(0.6))):
        c = rng.uniform(0, size, 2)
        r = rng.uniform(4, 12) * scale
        poly = _radial_polygon(
            c[0],
            c[1],
            r,
            rng.uniform(0.8, 1.3),
            rng.uniform(0, np.pi),
            rng.normal(0, 0.08, 3),
            rng.uniform(0, 2 * np.pi, 3),
            24,
        )
        _fill(holes, poly, 255, antialias=True)
    eosin *= 1.0 - 0.9 * cv2.GaussianBlur(holes, (0, 0), 1.0 * scale).astype(np.float32) / 255.0

    # Nuclei: malignant (high severity) means more, larger, more irregular, more variable, darker.
    s = severity
    density = stain["cellularity"] * (9.0 + 13.0 * s) * rng.lognormal(0.0, 0.25)
    n_nuclei = max(1, int(rng.poisson(max(density, 1.0))))
    mean_r = (2.2 + 1.5 * s + rng.normal(0, 0.25)) * scale
    size_cv = 0.10 + 0.28 * s + abs(rng.normal(0, 0.04))
    irregular = 0.03 + 0.20 * s + abs(rng.normal(0, 0.03))
    darkness = 0.75 + 0.25 * s + rng.normal(0, 0.05)
    # Nuclei cluster a little (glands / tumour nests) rather than falling uniformly.
    n_clusters = int(rng.integers(1, 4))
    centres = rng.uniform(0.1, 0.9, (n_clusters, 2)) * size
    which = rng.integers(0, n_clusters, n_nuclei)
    spread = size * rng.uniform(0.18, 0.45)
    xy = centres[which] + rng.normal(0, 1, (n_nuclei, 2)) * spread
    xy = np.where((xy < 0) | (xy >= size), rng.uniform(0, size, (n_nuclei, 2)), xy)
    radii = np.clip(mean_r * rng.lognormal(0.0, size_cv, n_nuclei), 1.0 * scale, 7.5 * scale)
    hema = np.zeros((size, size), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    for i in range(n_nuclei):
        poly = _radial_polygon(
            xy[i, 0],
            xy[i, 1],
            radii[i],
            aspect=rng.uniform(1.0, 1.0 + 0.5 * irregular + 0.25),
            angle=rng.uniform(0, np.pi),
            harmonics=rng.normal(0, irregular, 4) / np.array([1.0, 1.3, 1.7, 2.2]),
            phases=rng.uniform(0, 2 * np.pi, 4),
            n_vertices=18,
        )
        value = np.clip(darkness * rng.uniform(0.8, 1.1), 0.4, 1.0) * 255
        _fill(hema, poly, value, antialias=True)
        _fill(mask, poly, 255)
    chromatin = 1.0 + 0.18 * rng.standard_normal((size, size)).astype(np.float32)
    hema_f = cv2.GaussianBlur(hema, (0, 0), 0.5 * scale).astype(np.float32) / 255.0 * chromatin
    # A faint haematoxylin wash over the tissue (cytoplasm, out-of-focus nuclei).
    hema_f += 0.08 + 0.04 * _smooth_noise(rng, size, 6)

    # Beer-Lambert composition with per-patient stain vectors and concentrations.
    od = (
        np.clip(eosin, 0, None)[..., None] * stain["eosin_od"] * stain["eosin_amount"]
        + np.clip(hema_f, 0, None)[..., None] * stain["hema_od"] * stain["hema_amount"]
    )
    rgb = 255.0 * np.exp(-od) * stain["illumination"]
    rgb += rng.normal(0, 4.0, rgb.shape)
    rgb = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), stain["blur"] * scale)
    return np.clip(rgb, 0, 255).astype(np.uint8), mask


def _patient_stain(rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """Random stain variation of one patient's slide: stain hue, concentration, light, focus."""
    hema = _HEMATOXYLIN_OD + rng.normal(0, 0.06, 3)
    eosin = _EOSIN_OD + rng.normal(0, 0.06, 3)
    return {
        "hema_od": np.clip(hema, 0.05, None) / np.linalg.norm(np.clip(hema, 0.05, None)),
        "eosin_od": np.clip(eosin, 0.02, None) / np.linalg.norm(np.clip(eosin, 0.02, None)),
        "hema_amount": float(rng.uniform(1.4, 2.2)),
        "eosin_amount": float(rng.uniform(0.6, 1.1)),
        "illumination": np.clip(rng.normal(0.97, 0.02, 3), 0.9, 1.0),
        "blur": float(rng.uniform(0.3, 0.8)),
        "cellularity": float(rng.lognormal(0.0, 0.15)),
    }


def make_histology(
    out_dir: Path,
    n_patients: int = 60,
    images_per_patient: int = 8,
    size: int = 64,
    seed: int = 0,
    label_noise: float = 0.06,
) -> Path:
    """Write a binary H&E-like patch set in the IDC patient/class-folder layout, with nuclei masks."""
    _check_positive_int("n_patients", n_patients)
    _check_positive_int("images_per_patient", images_per_patient)
    _check_positive_int("size", size, minimum=16)
    if not 0.0 <= label_noise < 0.5:
        raise ValueError(
            f"Invalid value for argument `label_noise`. Expected a fraction in [0, 0.5). Received: {label_noise!r}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    patient_ids = np.sort(rng.choice(np.arange(8800, 16999), size=n_patients, replace=False))
    pos_fraction = _patient_positive_fractions(rng, n_patients)
    true_labels = (rng.random((n_patients, images_per_patient)) < pos_fraction[:, None]).astype(int)
    n_total = true_labels.size
    noisy = true_labels.ravel().copy()
    flip = rng.choice(n_total, size=int(round(label_noise * n_total)), replace=False)
    noisy[flip] = 1 - noisy[flip]
    noisy = noisy.reshape(true_labels.shape)

    for p, pid in enumerate(patient_ids):
        stain = _patient_stain(rng)
        patient_shift = rng.normal(0, 0.06)
        for k in range(images_per_patient):
            # Severity: the latent grade behind every drawn feature; the class means overlap.
            mu = 0.72 if true_labels[p, k] else 0.28
            severity = float(np.clip(mu + patient_shift + rng.normal(0, 0.17), 0.0, 1.0))
            image, mask = _histology_image(rng, size, severity, stain)
            label = int(noisy[p, k])
            folder = out_dir / str(pid) / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"{pid}_idx{k}_class{label}"
            _write_png(folder / f"{stem}.png", image)
            _write_png(folder / f"{stem}_mask.png", mask)
    # The answer key of the injected noise, for scoring the label-issue queue (a hidden file: not ingested).
    lines = ["sample_id,given_label,true_label"]
    for idx in np.sort(flip):
        p, k = divmod(int(idx), images_per_patient)
        given = int(noisy[p, k])
        lines.append(f"{patient_ids[p]}/{given}/{patient_ids[p]}_idx{k}_class{given}.png,{given},{true_labels[p, k]}")
    (out_dir / LABEL_NOISE_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_dir


# ---------------------------------------------------------------------------------------- lesions
# Class prototypes (dermoscopy-inspired). Colours are RGB 0..255; other values are unitless.
_LESION_PROTOTYPES: dict[str, dict[str, float | tuple[float, float, float]]] = {
    #        radius (fraction of size), border irregularity, asymmetry, second-colour weight,
    #        dark dots, white dots, streaks, vessels, central white patch
    "nv": dict(
        colour=(135, 88, 62),
        colour2=(95, 60, 45),
        radius=0.24,
        irregular=0.05,
        asym=0.06,
        var=0.20,
        dots=2.0,
        white=0.0,
        streaks=0.0,
        vessels=0.0,
        patch=0.0,
    ),
    "mel": dict(
        colour=(85, 55, 48),
        colour2=(95, 105, 135),
        radius=0.32,
        irregular=0.16,
        asym=0.22,
        var=0.55,
        dots=7.0,
        white=0.5,
        streaks=5.0,
        vessels=0.3,
        patch=0.05,
    ),
    "bkl": dict(
        colour=(168, 126, 88),
        colour2=(120, 85, 60),
        radius=0.29,
        irregular=0.10,
        asym=0.12,
        var=0.30,
        dots=1.0,
        white=5.0,
        streaks=0.0,
        vessels=0.0,
        patch=0.0,
    ),
    "bcc": dict(
        colour=(196, 140, 135),
        colour2=(100, 110, 140),
        radius=0.23,
        irregular=0.10,
        asym=0.12,
        var=0.40,
        dots=1.0,
        white=1.0,
        streaks=0.0,
        vessels=4.0,
        patch=0.1,
    ),
    "akiec": dict(
        colour=(195, 118, 108),
        colour2=(215, 185, 170),
        radius=0.24,
        irregular=0.13,
        asym=0.14,
        var=0.40,
        dots=0.5,
        white=2.5,
        streaks=0.0,
        vessels=1.5,
        patch=0.0,
    ),
    "vasc": dict(
        colour=(160, 45, 65),
        colour2=(110, 30, 60),
        radius=0.17,
        irregular=0.05,
        asym=0.06,
        var=0.45,
        dots=0.0,
        white=0.0,
        streaks=0.0,
        vessels=0.5,
        patch=0.0,
    ),
    "df": dict(
        colour=(160, 112, 84),
        colour2=(225, 205, 190),
        radius=0.17,
        irregular=0.06,
        asym=0.07,
        var=0.15,
        dots=1.0,
        white=0.5,
        streaks=1.0,
        vessels=0.0,
        patch=0.7,
    ),
}
_SCALARS = ("radius", "irregular", "asym", "var", "dots", "white", "streaks", "vessels", "patch")
_MEAN_AGE = {"nv": 42, "mel": 60, "bkl": 62, "bcc": 65, "akiec": 67, "vasc": 48, "df": 44}
_MALE_PROB = {"nv": 0.48, "mel": 0.58, "bkl": 0.55, "bcc": 0.60, "akiec": 0.65, "vasc": 0.50, "df": 0.45}
_SITES = (
    "back",
    "lower extremity",
    "trunk",
    "upper extremity",
    "abdomen",
    "face",
    "chest",
    "foot",
    "neck",
    "scalp",
    "hand",
    "ear",
)
_SITE_BASE = np.array([0.22, 0.20, 0.14, 0.11, 0.09, 0.07, 0.04, 0.03, 0.03, 0.03, 0.02, 0.02])
# Sun-exposed sites are more common for the keratinocyte lesions (bkl, bcc, akiec).
_SITE_BOOST = {
    "bkl": {"face": 2.5, "upper extremity": 1.4},
    "bcc": {"face": 3.0, "neck": 2.0, "back": 1.3},
    "akiec": {"face": 4.0, "hand": 2.5, "scalp": 2.0},
    "df": {"lower extremity": 2.0},
    "vasc": {"trunk": 1.6},
    "mel": {"back": 1.4},
}


def _class_counts(n: int, freqs: tuple[float, ...]) -> np.ndarray:
    """Largest-remainder allocation of n items to classes, at least one each when n allows it."""
    raw = np.asarray(freqs) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    while n >= len(freqs) and (counts == 0).any():
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    return counts


def _lesion_params(rng: np.random.Generator, dx: str) -> dict:
    """Draw one lesion's appearance: its class prototype, pulled part-way toward another class."""
    proto = _LESION_PROTOTYPES[dx]
    other = _LESION_PROTOTYPES[LESION_CLASSES[int(rng.integers(len(LESION_CLASSES)))]]
    w = float(rng.beta(1.0, 4.0)) * 0.6  # how far this lesion looks like another class
    p: dict = {}
    for key in _SCALARS:
        p[key] = (1 - w) * proto[key] + w * other[key]
    for key in ("colour", "colour2"):
        c = (1 - w) * np.array(proto[key]) + w * np.array(other[key])
        # Brightness varies freely; hue only a little (independent channel noise turns brown green).
        p[key] = np.clip(c * rng.lognormal(0, 0.09) + rng.normal(0, 4, 3), 10, 250)
    p["radius"] *= rng.lognormal(0, 0.15)
    p["irregular"] = abs(p["irregular"] + rng.normal(0, 0.04))
    p["asym"] = abs(p["asym"] + rng.normal(0, 0.05))
    p["var"] = float(np.clip(p["var"] + rng.normal(0, 0.12), 0, 0.9))
    p["patch"] = float(np.clip(p["patch"] + rng.normal(0, 0.1), 0, 1))
    # Shape and internal structures in lesion coordinates, so every image of the lesion matches.
    p["harmonics"] = rng.normal(0, 1, 7) * p["irregular"] / np.arange(1, 8) ** 0.6
    p["phases"] = rng.uniform(0, 2 * np.pi, 7)
    p["aspect"] = 1.0 + abs(rng.normal(0, 0.08 + p["asym"]))
    p["asym_dir"] = rng.uniform(0, 2 * np.pi)
    p["blotch"] = rng.uniform(-0.45, 0.45, 2)
    p["blotch_r"] = rng.uniform(0.35, 0.65)
    for key in ("dots", "white", "streaks", "vessels"):
        p["n_" + key] = int(rng.poisson(max(p[key], 0.0) * rng.lognormal(0, 0.3)))
    p["dots_xy"] = _unit_disc(rng, p["n_dots"], 0.8)
    p["white_xy"] = _unit_disc(rng, p["n_white"], 0.75)
    p["streak_ang"] = rng.uniform(0, 2 * np.pi, p["n_streaks"])
    p["vessel_paths"] = [
        np.cumsum(np.vstack([_unit_disc(rng, 1, 0.5), rng.normal(0, 0.18, (5, 2))]), axis=0)
        for _ in range(p["n_vessels"])
    ]
    p["skin"] = np.clip(np.array([228.0, 182.0, 152.0]) * rng.uniform(0.85, 1.03) + rng.normal(0, 6, 3), 60, 250)
    return p


def _unit_disc(rng: np.random.Generator, n: int, r_max: float) -> np.ndarray:
    """n points uniform in a disc of radius r_max (unit lesion coordinates)."""
    r = r_max * np.sqrt(rng.random(n))
    a = rng.uniform(0, 2 * np.pi, n)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _lesion_image(rng: np.random.Generator, p: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one view of a lesion (random pose and lighting) and its mask."""
    # Pose: each image of a lesion is the same lesion moved, rotated, scaled, possibly mirrored.
    radius = float(np.clip(p["radius"], 0.08, 0.38)) * size * rng.uniform(0.9, 1.1)
    margin = max(size * 0.5 - radius * 1.1, 0.0)
    cx, cy = size / 2 + rng.uniform(-0.5, 0.5, 2) * margin
    rot = rng.uniform(0, 2 * np.pi)
    mirror = -1.0 if rng.random() < 0.5 else 1.0

    def to_px(uv: np.ndarray) -> np.ndarray:
        u, v = uv[:, 0] * mirror, uv[:, 1]
        c, s = np.cos(rot), np.sin(rot)
        return np.stack([cx + radius * (c * u - s * v), cy + radius * (s * u + c * v)], axis=1)

    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    k = np.arange(2, 9)[:, None]
    rr = 1.0 + (p["harmonics"][:, None] * np.cos(k * theta + p["phases"][:, None])).sum(0)
    rr += p["asym"] * np.cos(theta - p["asym_dir"])
    rr = np.clip(rr, 0.4, 1.8)
    outline = np.stack([rr * np.cos(theta) * p["aspect"], rr * np.sin(theta) / p["aspect"]], axis=1)
    mask = np.zeros((size, size), np.uint8)
    _fill(mask, to_px(outline), 255)
    if not mask.any():  # a degenerate tiny lesion still needs one pixel of mask
        mask[int(np.clip(cy, 0, size - 1)), int(np.clip(cx, 0, size - 1))] = 255

    # Skin: tone, soft texture, lighting gradient.
    skin = p["skin"] * rng.uniform(0.92, 1.05)
    img = np.empty((size, size, 3), np.float32)
    img[:] = skin
    img *= (1.0 + 0.04 * _smooth_noise(rng, size, 4))[..., None]
    img += 5.0 * _smooth_noise(rng, size, 12, channels=3)

    # Lesion body: base colour with a blotch of the second colour, soft or sharp edge.
    alpha = cv2.GaussianBlur(mask, (0, 0), max(0.6, (1.6 - 4 * p["irregular"]) * size / 64)).astype(np.float32) / 255
    body = np.empty_like(img)
    body[:] = p["colour"]
    body *= (1.0 + 0.10 * _smooth_noise(rng, size, 6))[..., None]
    blotch = np.zeros((size, size), np.uint8)
    b_xy = to_px(p["blotch"][None])[0]
    cv2.circle(blotch, (int(b_xy[0]), int(b_xy[1])), max(1, int(p["blotch_r"] * radius)), 255, -1, cv2.LINE_AA)
    bw = cv2.GaussianBlur(blotch, (0, 0), 0.25 * radius + 0.5).astype(np.float32)[..., None] / 255 * p["var"]
    body = body * (1 - bw) + np.asarray(p["colour2"], np.float32) * bw
    if p["patch"] > 0.05:  # dermatofibroma-like central white scar
        patch = np.zeros((size, size), np.uint8)
        centre = to_px(np.zeros((1, 2)))[0]
        cv2.circle(patch, (int(centre[0]), int(centre[1])), max(1, int(0.4 * radius)), 255, -1, cv2.LINE_AA)
        pw = cv2.GaussianBlur(patch, (0, 0), 0.2 * radius + 0.5).astype(np.float32)[..., None] / 255 * p["patch"]
        body = body * (1 - pw) + np.array([232.0, 215.0, 205.0]) * pw
    img = img * (1 - alpha[..., None]) + body * alpha[..., None]

    # Structures drawn as soft weight maps: dark globules, white milia-like dots, peripheral
    # streaks, red vessels (drawn as maps and blurred so one-pixel dots do not render as crosses).
    unit = size / 64
    dark = np.zeros((size, size), np.uint8)
    white = np.zeros((size, size), np.uint8)
    red = np.zeros((size, size), np.uint8)
    dot_r = max(1, int(round(1.2 * unit)))
    for x, y in to_px(p["dots_xy"]):
        cv2.circle(dark, (int(round(x)), int(round(y))), dot_r, 255, -1)
    for x, y in to_px(p["white_xy"]):
        cv2.circle(white, (int(round(x)), int(round(y))), dot_r, 255, -1)
    for a in p["streak_ang"]:
        r0 = np.interp(a, theta, rr, period=2 * np.pi)
        seg = np.array([[0.75 * r0 * np.cos(a), 0.75 * r0 * np.sin(a)], [1.15 * r0 * np.cos(a), 1.15 * r0 * np.sin(a)]])
        (x0, y0), (x1, y1) = to_px(seg)
        cv2.line(dark, (int(x0), int(y0)), (int(x1), int(y1)), 200, max(1, int(unit)), cv2.LINE_AA)
    for path in p["vessel_paths"]:
        pts = np.round(to_px(path)).astype(np.int32)
        cv2.polylines(red, [pts], False, 200, max(1, int(unit)), cv2.LINE_AA)

    def soft(m: np.ndarray, sigma: float = 0.6, gain: float = 1.0) -> np.ndarray:
        blurred = cv2.GaussianBlur(m, (0, 0), sigma * unit).astype(np.float32)[..., None] / 255
        return np.clip(blurred * gain, 0.0, 1.0)

    for weight, colour in (
        (soft(dark, 0.9, 1.4), np.asarray(p["colour"]) * 0.45),
        (soft(white, 0.9, 1.4), np.array([230.0, 222.0, 205.0])),
        (soft(red) * 0.8, np.array([185.0, 40.0, 50.0])),
    ):
        img = img * (1 - weight) + colour * weight

    # Occasional hair, then the dermatoscope's dark vignette, lighting and sensor noise.
    for _ in range(int(rng.poisson(0.5))):
        start = rng.uniform(0, size, 2)
        steps = np.cumsum(rng.normal(0, 1, (8, 2)) * size / 25 + rng.normal(0, 1, 2) * size / 10, axis=0)
        pts = np.round(start + steps).astype(np.int32)
        cv2.polylines(img, [pts], False, (45.0, 32.0, 28.0), 1, cv2.LINE_AA)
    if rng.random() < 0.3:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        d = np.hypot(xx - size / 2, yy - size / 2) / (size * rng.uniform(0.62, 0.75))
        img *= np.clip(1.3 - d, 0.05, 1.0)[..., None] ** 1.5
    img *= rng.normal(1.0, 0.05) * np.clip(rng.normal(1.0, 0.025, 3), 0.93, 1.07)
    img += rng.normal(0, 3.0, img.shape)
    img = cv2.GaussianBlur(img, (0, 0), 0.45 * size / 64)
    return np.clip(img, 0, 255).astype(np.uint8), mask


# Acquisition sites of the lesion demo: one hospital's older dermatoscope gives defocused, washed-out, noisy
# images, so a model that looks fine overall fails there (the Subgroups page shows it).
_LESION_SITES = ("hospital A", "hospital B", "hospital C")
_LESION_SITE_P = (0.45, 0.35, 0.20)
_LESION_HARD_SITE = "hospital C"


def _lesion_site_view(rng: np.random.Generator, image: np.ndarray, site: str) -> np.ndarray:
    """The image as `site`'s camera records it: unchanged, or (the hard site) defocused, lower in contrast,
    noisy and with a drifting white balance, which blurs the small structures (dots, streaks, vessels) and the
    colours that tell the classes apart."""
    if site != _LESION_HARD_SITE:
        return image
    size = image.shape[0]
    img = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.9 * size / 64 + 0.3)
    mean = img.reshape(-1, 3).mean(0)
    # A white balance that drifts from image to image makes colour, the strongest class cue, unreliable.
    img = mean + (img - mean) * 0.85
    img = img * rng.uniform(0.6, 1.4, 3) + rng.normal(0, 12.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_lesions(out_dir: Path, n_lesions: int = 220, size: int = 64, seed: int = 1) -> Path:
    """Write an imbalanced 7-class lesion set in the HAM10000 layout (images/, masks/, metadata.csv).

    Besides HAM10000's columns the CSV has `site` (the acquiring hospital); one site's images are harder
    (`_lesion_site_view`). Sites come from their own random stream, so the other images are unchanged."""
    _check_positive_int("n_lesions", n_lesions)
    _check_positive_int("size", size, minimum=16)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    site_rng = np.random.default_rng([seed, 2026])

    counts = _class_counts(n_lesions, LESION_FREQUENCIES)
    dx_of_lesion = np.repeat(np.array(LESION_CLASSES), counts)
    rng.shuffle(dx_of_lesion)
    lesion_numbers = np.sort(rng.choice(np.arange(1, 9999), size=n_lesions, replace=False))
    n_images = rng.choice([1, 2, 3], size=n_lesions, p=[0.5, 0.3, 0.2])
    image_numbers = iter(24306 + np.sort(rng.choice(np.arange(n_images.sum() * 4), n_images.sum(), replace=False)))

    rows: list[dict[str, object]] = []
    for lesion_no, dx, n_img in zip(lesion_numbers, dx_of_lesion, n_images):
        dx = str(dx)
        lesion_id = f"HAM_{lesion_no:07d}"
        age = float(np.clip(5 * round(rng.normal(_MEAN_AGE[dx], 14) / 5), 5, 85))
        sex = "male" if rng.random() < _MALE_PROB[dx] else "female"
        site_p = _SITE_BASE * np.array([_SITE_BOOST.get(dx, {}).get(s, 1.0) for s in _SITES])
        site = _SITES[int(rng.choice(len(_SITES), p=site_p / site_p.sum()))]
        params = _lesion_params(rng, dx)
        hospital = _LESION_SITES[int(site_rng.choice(len(_LESION_SITES), p=_LESION_SITE_P))]
        for _ in range(n_img):
            image_id = f"ISIC_{next(image_numbers):07d}"
            image, mask = _lesion_image(rng, params, size)
            image = _lesion_site_view(site_rng, image, hospital)
            _write_png(out_dir / "images" / f"{image_id}.png", image)
            _write_png(out_dir / "masks" / f"{image_id}_mask.png", mask)
            rows.append(
                dict(image_id=image_id, lesion_id=lesion_id, dx=dx, age=age, sex=sex, localization=site, site=hospital)
            )

    with open(out_dir / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*LESION_CSV_COLUMNS, "site"])
        writer.writeheader()
        writer.writerows(rows)
    return out_dir


# ------------------------------------------------------------------------------------------- demo
def stain_shift(rgb: np.ndarray, hue_shift: int = 12, saturation: float = 0.75, blur: float = 0.8) -> np.ndarray:
    """Another lab's staining and scanner: hue rotation, paler stain, slight defocus."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + hue_shift) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    return cv2.GaussianBlur(out, (0, 0), blur) if blur > 0 else out


def make_stain_shifted_histology(out_dir: Path, n_patients: int = 20, size: int = 64, seed: int = 100) -> Path:
    """A histology evaluation set from new patients with a shifted stain (a second site), same layout."""
    out_dir = make_histology(Path(out_dir), n_patients=n_patients, size=size, seed=seed)
    for path in sorted(out_dir.rglob("*.png")):
        if path.stem.endswith("_mask"):
            continue
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        cv2.imwrite(str(path), cv2.cvtColor(stain_shift(rgb), cv2.COLOR_RGB2BGR))
    return out_dir


def make_demo_sources(root: Path, seed: int = 0, size: int = 64) -> dict[str, Path]:
    """Build the histology and lesion demo sets under `root` unless already complete; return their paths."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    builders = {
        "histology": lambda d: make_histology(d, size=size, seed=seed),
        "histology-stainshift": lambda d: make_stain_shifted_histology(d, size=size, seed=seed + 100),
        "lesions": lambda d: make_lesions(d, size=size, seed=seed + 1),
    }
    paths: dict[str, Path] = {}
    for name, build in builders.items():
        target = root / name
        stamp = json.dumps({"name": name, "seed": seed, "size": size, "version": 2}, sort_keys=True)
        marker = target / MARKER_FILE
        if marker.is_file() and marker.read_text(encoding="utf-8") == stamp:
            paths[name] = target
            continue
        # Build in a scratch folder and swap it in, so an interrupted build never looks complete.
        scratch = root / f".{name}.partial"
        shutil.rmtree(scratch, ignore_errors=True)
        build(scratch)
        (scratch / MARKER_FILE).write_text(stamp, encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
        paths[name] = target
    return paths


# ------------------------------------------------------------------------------------- grad-cam aid
def corner_evidence_image(size: int, corner: str, seed: int = 0) -> np.ndarray:
    """A uint8 HxWx3 image: plain noisy grey background with a bright textured blob in one corner."""
    if corner not in CORNERS:
        raise ValueError(f"Invalid value for argument `corner`. Expected one of {CORNERS}. Received: {corner!r}")
    _check_positive_int("size", size, minimum=8)
    rng = np.random.default_rng(seed)
    img = 90.0 + rng.normal(0, 6.0, (size, size, 3))
    cy = 0.22 * size if corner[0] == "t" else 0.78 * size
    cx = 0.22 * size if corner[1] == "l" else 0.78 * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = 0.2 * size
    # Flat-topped disc with a soft rim: the evidence is unambiguous yet has no hard aliasing edge.
    blob = np.clip((radius - np.hypot(xx - cx, yy - cy)) / (0.3 * radius), 0.0, 1.0)
    stripes = 0.5 + 0.5 * np.sign(np.sin((xx + yy) * (2 * np.pi / max(3.0, size / 10))))
    texture = 185.0 + 60.0 * stripes + rng.normal(0, 8.0, (size, size))
    colour = np.array([1.0, 0.95, 0.55])  # warm white: bright in every channel
    img = img * (1 - blob[..., None]) + (texture[..., None] * colour) * blob[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def read_label_noise(root: Path) -> set[str]:
    """Sample ids (paths relative to `root`) whose label `make_histology` flipped; empty when not recorded."""
    path = Path(root) / LABEL_NOISE_FILE
    if not path.is_file():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return {line.split(",", 1)[0] for line in lines if line.strip()}

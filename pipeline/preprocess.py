"""Image preprocessing without TensorFlow: decoding, resizing, encoding (and later thresholding).

Decoding turns the bytes of any supported medical image (PNG, JPEG, TIFF, BMP, GIF, WebP, PPM,
DICOM, or a MedMNIST ``.npz`` entry) into one normalised form: an ``HxWx3 uint8`` RGB array plus
notes saying what was converted. Every way a file can be wrong ends in :class:`ImageDecodeError`
with a one-line message, because the same path serves live uploads on demo day: no other exception
type, no crash, and the pixel count is checked from the header before any pixels are decoded.

Only NumPy, OpenCV, Pillow and pydicom (imported on the first DICOM) are used, with no side effects
on import: Pillow's global ``MAX_IMAGE_PIXELS`` is left alone and the limit is enforced per call.
"""

from __future__ import annotations

import io
import os
import re
import struct
import threading
import warnings
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 50_000_000

# Pillow plugins allowed to open untrusted bytes. Formats such as EPS (runs Ghostscript) or the
# exotic raster plugins are excluded on purpose: they widen the attack surface for no medical use.
PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "PPM")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".dcm", ".dicom")
DICOM_EXTENSIONS = (".dcm", ".dicom")
DICOM_IDENTITY_TAGS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Rows",
    "PixelData",
)
# DICOM objects that never carry pixels: structured reports, presentation states, key objects ...
NON_IMAGE_MODALITIES = ("SR", "PR", "KO", "DOC", "REG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SEG", "FID")

NPZ_REF = re.compile(r"^(?P<file>.+\.npz)::(?P<key>[A-Za-z0-9_.\-]+)\[(?P<index>\d+)\]$")


# ============================================================================ decoding


class ImageDecodeError(ValueError):
    """The bytes are not a usable image; the message says why in one line."""


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded image normalised to RGB uint8, with a record of every conversion made."""

    rgb: np.ndarray  # HxWx3 uint8, C-contiguous
    notes: tuple[str, ...]  # human-readable conversions, e.g. "grayscale -> RGB"
    original_shape: tuple[int, ...]  # shape of the pixel array as stored (before conversion)
    original_dtype: str  # dtype as stored, e.g. "uint16"
    format: str  # "PNG", "JPEG", "TIFF", "BMP", "DICOM", "NPZ", ...


def sniff_format(head: bytes, name: str = "") -> str | None:
    """Image format from the first bytes (and the name for DICOM), or None when unrecognised."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if len(head) >= 2 and head[0:1] == b"P" and head[1:2] in b"123456":
        return "PPM"
    if name.lower().endswith(DICOM_EXTENSIONS):
        return "DICOM"  # DICOM files without the 128-byte preamble exist; the name is the only hint
    return None


def describe_non_image(head: bytes) -> str:
    """A one-line guess at what a non-image file is, for error messages and skip reports."""
    if not head:
        return "empty file"
    known = (
        (b"%PDF", "the file starts with %PDF (a PDF renamed?)"),
        (b"PK\x03\x04", "the file starts with PK (a ZIP archive, .docx or .xlsx renamed?)"),
        (b"\x1f\x8b", "the file starts with a gzip header (a compressed archive renamed?)"),
        (b"\x93NUMPY", "the file is a NumPy .npy array, not an image file"),
        (b"\x00\x00\x00\x0cjP  ", "the file is JPEG 2000, which is not supported"),
        (b"\xff\x4f\xff\x51", "the file is a JPEG 2000 codestream, which is not supported"),
        (b"\xd0\xcf\x11\xe0", "the file is an old Office document (a .doc/.xls or Thumbs.db?)"),
    )
    for magic, text in known:
        if head.startswith(magic):
            return f"not an image: {text}"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "not a supported image: the file is HEIC/MP4-style (convert it to PNG or JPEG)"
    stripped = head.lstrip()
    if stripped[:1] == b"<":
        return "not an image: the file looks like HTML/XML/SVG text"
    if _looks_like_text(head):
        return "not an image: the file looks like text"
    return f"not a recognised image format (first bytes: {head[:8].hex(' ')})"


def decode_image(data: bytes, name: str = "", max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image bytes to RGB uint8, refusing anything over ``max_pixels`` before decoding."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"Invalid type for argument `data`. Expected bytes. Received: {type(data).__name__}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0:
        raise ValueError(f"Invalid value for argument `max_pixels`. Expected a positive int. Received: {max_pixels!r}")
    data = bytes(data)
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    fmt = sniff_format(data[:132], name)
    if fmt == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        # the size is at a fixed offset: refuse zero and huge sizes before any parser runs
        width, height = struct.unpack(">II", data[16:24])
        if width == 0 or height == 0:
            raise ImageDecodeError(f"PNG has zero size ({width}x{height})")
        if width * height > max_pixels:
            raise ImageDecodeError(_size_message(width, height, int(max_pixels)))
    try:
        if fmt == "DICOM":
            return _checked(_decode_dicom(data, int(max_pixels)))
        return _checked(_decode_pillow(data, fmt, int(max_pixels)))
    except ImageDecodeError:
        raise
    except MemoryError:
        raise ImageDecodeError(f"not enough memory to decode this {fmt or 'image'}") from None
    except Exception as exc:  # noqa: BLE001 - the contract is: every failure is an ImageDecodeError
        raise ImageDecodeError(f"could not decode {fmt or 'image'}: {_short(exc)}") from exc


def _checked(decoded: DecodedImage) -> DecodedImage:
    """The last line of the contract: an HxWx3 uint8 image, or ImageDecodeError (never a malformed array)."""
    rgb = decoded.rgb
    if not (
        isinstance(rgb, np.ndarray)
        and rgb.dtype == np.uint8
        and rgb.ndim == 3
        and rgb.shape[2] == 3
        and rgb.shape[0] > 0
        and rgb.shape[1] > 0
    ):
        raise ImageDecodeError(
            f"{decoded.format} decoded to an unusable pixel array "
            f"(shape {tuple(getattr(rgb, 'shape', ()))}, dtype {getattr(rgb, 'dtype', '?')})"
        )
    return decoded


def decode_array(array: np.ndarray, format: str = "ARRAY") -> DecodedImage:
    """Normalise an in-memory pixel array (2-D, or HxWxC with C in 1..4) to RGB uint8 with notes."""
    arr = np.asarray(array)
    rgb, notes = _array_to_rgb8(arr)
    return DecodedImage(rgb, tuple(notes), tuple(int(s) for s in arr.shape), str(arr.dtype), format)


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode an image file, or a NumPy-archive entry written as ``<file.npz>::<key>[<index>]``."""
    text = os.fspath(path)
    ref = NPZ_REF.match(str(text))
    if ref:
        return _load_npz_entry(ref["file"], ref["key"], int(ref["index"]))
    try:
        with open(text, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {text}: {exc.strerror or exc}") from None
    return decode_image(data, name=os.path.basename(text), max_pixels=max_pixels)


def probe_image(path: str | Path) -> tuple[str, int, int]:
    """(format, width, height) from the file header alone, or ImageDecodeError; fast enough for 100k files."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
            fmt = sniff_format(head, os.path.basename(os.fspath(path)))
            if not head:
                raise ImageDecodeError("empty file (0 bytes)")
            if fmt is None:
                raise ImageDecodeError(describe_non_image(head[:64]))
            if fmt == "DICOM":
                return fmt, 0, 0  # sizes live deep in the DICOM header; decode_image checks them
            size = _fast_header_size(fmt, head, fh)
            if size is None:  # formats without a fixed-offset size: let Pillow parse the header lazily
                fh.seek(0)
                with Image.open(fh, formats=PIL_FORMATS) as img:
                    size = img.size
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(_short(exc)) from None
    except OSError as exc:
        if isinstance(exc, Image.UnidentifiedImageError):
            raise ImageDecodeError(f"corrupt {fmt}: the header cannot be read") from None
        raise ImageDecodeError(f"cannot read {path}: {exc.strerror or _short(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the contract: every failure is an ImageDecodeError
        raise ImageDecodeError(f"corrupt {fmt}: {_short(exc)}") from None
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{fmt} has zero size ({width}x{height})")
    return fmt, int(width), int(height)


def parse_npz_ref(path: str) -> tuple[str, str, int] | None:
    """Split ``file.npz::key[index]`` into (file, key, index); None when ``path`` is a plain path."""
    ref = NPZ_REF.match(str(path))
    return (ref["file"], ref["key"], int(ref["index"])) if ref else None


def clear_npz_cache() -> None:
    """Forget the cached NumPy-archive arrays (tests, or after the files changed)."""
    with _NPZ_LOCK:
        _NPZ_CACHE.clear()


# ---------------------------------------------------------------- Pillow / OpenCV formats


def _decode_pillow(data: bytes, fmt: str | None, max_pixels: int) -> DecodedImage:
    """Formats read by Pillow (OpenCV for 16-bit colour, which Pillow truncates to 8 bits)."""
    try:
        img = Image.open(io.BytesIO(data), formats=PIL_FORMATS)  # lazy: reads the header only
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(_too_big_message(data, max_pixels, str(exc))) from None
    except Image.UnidentifiedImageError:
        if fmt is None:
            raise ImageDecodeError(describe_non_image(data[:64])) from None
        if fmt == "TIFF":  # Pillow cannot open some valid TIFFs (e.g. float RGB) that OpenCV reads
            return _decode_tiff_with_cv2(data, max_pixels)
        raise ImageDecodeError(f"corrupt {fmt}: the header cannot be read") from None
    fmt = img.format or fmt or "image"
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{fmt} has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageDecodeError(_size_message(width, height, max_pixels))

    notes: list[str] = []
    n_frames = _frame_count(img)
    if n_frames > 1:
        notes.append(f"1 frame of {n_frames} used")

    # OpenCV allocates a PNG chunk's declared length up front (a 2 kB file claiming a 2 GB IDAT cost 2 GB of
    # RAM, found by fuzzing): only a PNG whose chunks fit in the file goes to OpenCV; others go to Pillow.
    if fmt in ("PNG", "TIFF") and _is_16bit_colour(img, data) and (fmt != "PNG" or _png_chunks_fit(data)):
        arr = _cv2_decode(data)
        if arr is not None and arr.ndim == 3 and arr.shape[:2] == (height, width):
            rgb, more = _array_to_rgb8(_bgr_to_rgb(arr))
            return DecodedImage(rgb, tuple(notes + more), tuple(arr.shape), str(arr.dtype), fmt)
        notes.append("16-bit colour read as 8-bit (high byte) because OpenCV could not decode it")

    try:
        img.load()
    except (OSError, SyntaxError, EOFError, ValueError, struct.error) as exc:
        text = str(exc)
        if "truncated" in text or isinstance(exc, EOFError):
            raise ImageDecodeError(f"truncated {fmt} (the file ends before the image data is complete)") from None
        if fmt == "TIFF":  # Pillow lacks some TIFF sample formats (e.g. float RGB) that OpenCV reads
            arr = _cv2_decode(data)
            if arr is not None and arr.shape[:2] == (height, width):
                rgb, more = _array_to_rgb8(_bgr_to_rgb(arr))
                return DecodedImage(rgb, tuple(notes + more), tuple(arr.shape), str(arr.dtype), fmt)
        raise ImageDecodeError(f"corrupt {fmt}: {_short(exc)}") from None

    img, rotated = _apply_exif_orientation(img)
    if rotated:
        notes.append("rotated according to the EXIF orientation tag")
    mode = img.mode
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette -> RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        target = "RGBA" if mode in ("RGBa", "La") else "RGB"
        img = img.convert(target)
        notes.append(f"{mode} -> {target}")
    try:
        arr = np.asarray(img)
    except (ValueError, TypeError, OSError):
        img = img.convert("I")  # rare integer modes NumPy cannot view directly (e.g. I;16S)
        arr = np.asarray(img)
    original_shape, original_dtype = tuple(int(s) for s in arr.shape), str(arr.dtype)
    if mode == "1":
        original_dtype = "bool"
    rgb, more = _array_to_rgb8(arr)
    return DecodedImage(rgb, tuple(notes + more), original_shape, original_dtype, fmt)


def _fast_header_size(fmt: str, head: bytes, fh: Any) -> tuple[int, int] | None:
    """Width and height read straight from a PNG/JPEG/BMP/GIF header; None to ask Pillow instead."""
    if fmt == "PNG":
        if len(head) < 33 or head[12:16] != b"IHDR" or head[8:12] != b"\x00\x00\x00\x0d":
            raise ImageDecodeError("corrupt PNG: the first chunk is not a valid IHDR")
        if struct.unpack(">I", head[29:33])[0] != zlib.crc32(head[12:29]):
            raise ImageDecodeError("corrupt PNG: IHDR checksum mismatch")
        width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
        if depth not in (1, 2, 4, 8, 16) or colour not in (0, 2, 3, 4, 6):
            raise ImageDecodeError(f"corrupt PNG: invalid bit depth {depth} / colour type {colour}")
        return width, height
    if fmt == "GIF":
        return struct.unpack("<HH", head[6:10]) if len(head) >= 10 else None
    if fmt == "BMP":
        if len(head) < 26:
            raise ImageDecodeError("corrupt BMP: the header is cut short")
        header_size = struct.unpack("<I", head[14:18])[0]
        if header_size == 12:
            return struct.unpack("<HH", head[18:22])
        if header_size in (40, 52, 56, 64, 108, 124):
            width, height = struct.unpack("<ii", head[18:26])
            return width, abs(height)  # negative height = top-down rows
        raise ImageDecodeError(f"corrupt BMP: unknown header size {header_size}")
    if fmt == "JPEG":
        return _jpeg_size(fh)
    return None


def _jpeg_size(fh: Any) -> tuple[int, int]:
    """Walk the JPEG marker segments (seeking past EXIF and friends) to the frame header."""
    fh.seek(2)
    for _ in range(1000):  # a real file reaches its frame header within a few dozen segments
        marker = fh.read(2)
        while marker[:1] == b"\xff" and marker[1:2] == b"\xff":  # fill bytes
            marker = marker[1:] + fh.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            raise ImageDecodeError("corrupt JPEG: no frame header before the data ends")
        code = marker[1]
        if code in (0x01, *range(0xD0, 0xD9)):
            continue  # markers without a length
        if code == 0xD9 or code == 0xDA:
            raise ImageDecodeError("corrupt JPEG: no frame header before the image data")
        length_bytes = fh.read(2)
        if len(length_bytes) < 2:
            raise ImageDecodeError("truncated JPEG (the header is cut short)")
        length = struct.unpack(">H", length_bytes)[0]
        if length < 2:
            raise ImageDecodeError("corrupt JPEG: invalid segment length")
        if code in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            frame = fh.read(5)
            if len(frame) < 5:
                raise ImageDecodeError("truncated JPEG (the frame header is cut short)")
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        fh.seek(length - 2, os.SEEK_CUR)
    raise ImageDecodeError("corrupt JPEG: too many header segments")


def _decode_tiff_with_cv2(data: bytes, max_pixels: int) -> DecodedImage:
    """Fallback for TIFFs Pillow cannot open; the size comes from the first IFD before decoding."""
    size = _tiff_size(data)
    if size is None:
        raise ImageDecodeError("corrupt TIFF: the header cannot be read")
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"TIFF has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageDecodeError(_size_message(width, height, max_pixels))
    arr = _cv2_decode(data)
    if arr is None or arr.shape[:2] != (height, width):
        raise ImageDecodeError("corrupt TIFF: neither Pillow nor OpenCV can decode it")
    rgb, notes = _array_to_rgb8(_bgr_to_rgb(arr))
    return DecodedImage(rgb, tuple(notes), tuple(int(s) for s in arr.shape), str(arr.dtype), "TIFF")


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first IFD of a classic TIFF, without decoding anything."""
    if len(data) < 8 or data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    found: dict[int, int] = {}
    for i in range(count):
        entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
        if len(entry) < 12:
            return None
        tag, typ = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            value = struct.unpack(order + ("H" if typ == 3 else "I"), entry[8:10] if typ == 3 else entry[8:12])[0]
            found[tag] = value
    return (found[256], found[257]) if 256 in found and 257 in found else None


def _frame_count(img: Image.Image) -> int:
    """Number of frames/pages; 1 when the plugin cannot tell (counting must never fail the decode)."""
    try:
        return max(1, int(getattr(img, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - a broken later page does not matter: only the first is used
        return 1


def _png_chunks_fit(data: bytes) -> bool:
    """True when every PNG chunk up to IEND lies inside `data` (no declared length runs past the end)."""
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if length > len(data) - pos - 12:
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos += 12 + length
    return False  # no IEND: truncated


def _is_16bit_colour(img: Image.Image, data: bytes) -> bool:
    """True for 16-bit-per-channel colour PNG/TIFF, which Pillow silently reduces to 8 bits."""
    if img.format == "PNG":
        return len(data) >= 26 and data[12:16] == b"IHDR" and data[24] == 16 and data[25] in (2, 6)
    if img.format == "TIFF":
        try:
            bits = img.tag_v2.get(258)
            bits = tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)
            return img.mode in ("RGB", "RGBA", "RGBX") and any(b == 16 for b in bits)
        except Exception:  # noqa: BLE001 - an unreadable tag just means "use Pillow"
            return False
    return False


def _cv2_decode(data: bytes) -> np.ndarray | None:
    """OpenCV decode keeping bit depth and channels; None when OpenCV cannot read it."""
    try:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    return arr if isinstance(arr, np.ndarray) and arr.size else None


def _bgr_to_rgb(arr: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) channel order to RGB(A)."""
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr[:, :, ::-1]
    if arr.ndim == 3 and arr.shape[2] == 4:
        return arr[:, :, [2, 1, 0, 3]]
    return arr


def _apply_exif_orientation(img: Image.Image) -> tuple[Image.Image, bool]:
    """Rotate phone photos (dermoscopy, ultrasound screenshots) the way viewers show them."""
    try:
        orientation = img.getexif().get(0x0112, 1)
        if orientation in (None, 1):
            return img, False
        return ImageOps.exif_transpose(img), True
    except Exception:  # noqa: BLE001 - broken EXIF must not make a readable image unreadable
        return img, False


def _size_message(width: int, height: int, max_pixels: int) -> str:
    """The one-line refusal for an image whose header announces too many pixels."""
    return f"image is {width}x{height} = {_mp(width * height)} MP, above the limit of {_mp(max_pixels)} MP"


def _too_big_message(data: bytes, max_pixels: int, pillow_message: str) -> str:
    """Refusal text for Pillow's own decompression-bomb error, with WxH when the header gives it."""
    if data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return _size_message(width, height, max_pixels)
    found = re.search(r"\((\d+) pixels\)", pillow_message)
    count = int(found.group(1)) if found else 0
    return f"image has {_mp(count)} MP, above the limit of {_mp(max_pixels)} MP"


def _mp(pixels: int) -> str:
    """Megapixels for messages: '400', '0.25', '1.5'."""
    value = pixels / 1e6
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.3g}"


# ---------------------------------------------------------------- DICOM


def _decode_dicom(data: bytes, max_pixels: int) -> DecodedImage:
    """DICOM via pydicom: first frame, modality LUT (rescale), window or VOI LUT, MONOCHROME1 inverted."""
    import pydicom  # noqa: PLC0415 - keeps a plain PNG decode independent of pydicom's import cost
    from pydicom import pixels as dcm_pixels  # noqa: PLC0415

    with warnings.catch_warnings():
        # pydicom warns about every non-conformant value; the user only needs the final verdict
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except Exception as exc:  # noqa: BLE001 - any parser failure means "not readable DICOM"
            raise ImageDecodeError(f"not a valid DICOM file: {_short(exc)}") from None
        if not any(tag in ds for tag in DICOM_IDENTITY_TAGS):
            # force=True parses anything; without these elements it was not DICOM (or is cut short)
            raise ImageDecodeError("not a valid DICOM file: no DICOM image elements found (truncated, or not DICOM)")
        if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            modality = str(ds.get("Modality", "") or "").strip()
            hint = f" (Modality {modality}: not an image object)" if modality in NON_IMAGE_MODALITIES else ""
            raise ImageDecodeError(f"DICOM has no pixel data{hint}")
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        if rows <= 0 or cols <= 0:
            raise ImageDecodeError(f"DICOM has zero size (Rows={rows}, Columns={cols})")
        if rows * cols > max_pixels:
            raise ImageDecodeError(_size_message(cols, rows, max_pixels))
        n_frames = _int_or(ds.get("NumberOfFrames", 1), 1)
        samples = _int_or(ds.get("SamplesPerPixel", 1), 1)
        if samples not in (1, 3, 4):
            raise ImageDecodeError(f"DICOM SamplesPerPixel must be 1 or 3, got {samples}")
        try:
            arr = dcm_pixels.pixel_array(ds, index=0 if n_frames > 1 else None)
        except Exception as exc:  # noqa: BLE001
            if "less than expected" in str(exc):
                raise ImageDecodeError(f"truncated DICOM: {_short(exc)}") from None
            raise ImageDecodeError(f"DICOM pixel data cannot be decoded: {_short(exc)}") from None
        notes: list[str] = []
        if n_frames > 1:
            notes.append(f"1 frame of {n_frames} used")
        original_shape, original_dtype = tuple(int(s) for s in arr.shape), str(arr.dtype)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "").strip().upper()
        if arr.ndim == (3 if samples == 1 else 4):
            arr = arr[0]  # a multi-frame array despite index=0 (old plugins, surplus pixel data): first frame
        expected = (rows, cols) if samples == 1 else (rows, cols, samples)
        if arr.shape != expected:  # the header and the pixel data disagree (fuzzed: Rows=1 gave a 5-D "image")
            raise ImageDecodeError(
                f"DICOM pixel data has shape {tuple(arr.shape)}, but Rows/Columns/SamplesPerPixel say {expected}"
            )
        if photometric == "PALETTE COLOR":
            arr = dcm_pixels.apply_color_lut(arr, ds)
            notes.append("DICOM: palette colour LUT applied")
            rgb, more = _array_to_rgb8(arr)
            return DecodedImage(rgb, tuple(notes + more), original_shape, original_dtype, "DICOM")
        if arr.ndim == 3:  # colour: pydicom already converted YBR to RGB
            rgb, more = _array_to_rgb8(arr)
            return DecodedImage(rgb, tuple(notes + more), original_shape, original_dtype, "DICOM")
        gray, more = _dicom_gray_to_8bit(arr, ds, dcm_pixels)
        notes.extend(more)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
        notes.append("MONOCHROME1 inverted (bright = dense, as viewers show it)")
    notes.append("grayscale -> RGB")
    rgb = np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    return DecodedImage(rgb, tuple(notes), original_shape, original_dtype, "DICOM")


def _dicom_gray_to_8bit(arr: np.ndarray, ds: Any, dcm_pixels: Any) -> tuple[np.ndarray, list[str]]:
    """Stored values -> modality values (rescale) -> display window -> uint8."""
    steps: list[str] = []
    has_rescale = "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds
    values = dcm_pixels.apply_modality_lut(arr, ds) if has_rescale else arr
    if has_rescale:
        steps.append("rescale slope/intercept")
    center, width = _first_number(ds.get("WindowCenter")), _first_number(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        low, high = center - width / 2.0, center + width / 2.0
        scaled = (np.clip(values.astype(np.float32), low, high) - low) * (255.0 / (high - low))
        gray = np.rint(scaled).astype(np.uint8)
        steps.append("window")
    else:
        if "VOILUTSequence" in ds:
            values = dcm_pixels.apply_voi_lut(values, ds)
            steps.append("VOI LUT")
        gray, _ = _scale_to_uint8(values)
        steps.append("min-max scaling")
    return gray, [f"DICOM: applied {' and '.join(steps)}"]


def _first_number(value: Any) -> float | None:
    """First element of a possibly multi-valued DICOM number (WindowCenter can hold several)."""
    if value is None:
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0] if len(value) else None
        number = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if np.isfinite(number) else None


def _int_or(value: Any, default: int) -> int:
    """An int from a DICOM value that may be a string, empty, or missing."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------- NumPy archives (MedMNIST)

_NPZ_CACHE: OrderedDict[tuple[str, int, int, str], np.ndarray] = OrderedDict()
_NPZ_LOCK = threading.Lock()
_NPZ_CACHE_SIZE = 6  # a MedMNIST file has 6 arrays; a few archives' worth is enough


def _load_npz_entry(file: str, key: str, index: int) -> DecodedImage:
    """One image of a NumPy archive; each array is loaded once and kept in a small LRU cache."""
    array = _npz_array(file, key)
    if array.ndim not in (3, 4) or index >= array.shape[0]:
        raise ImageDecodeError(
            f"{file}::{key}[{index}]: index out of range for an array of shape "
            f"{tuple(array.shape)} (expected N images, 0 <= index < N)"
        )
    decoded = decode_array(array[index], format="NPZ")
    return decoded


def _npz_array(file: str, key: str) -> np.ndarray:
    """The array ``key`` of ``file``, cached by (path, size, mtime) so edited archives reload."""
    try:
        stat = os.stat(file)
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {file}: {exc.strerror or exc}") from None
    cache_key = (os.path.abspath(file), stat.st_size, stat.st_mtime_ns, key)
    with _NPZ_LOCK:
        if cache_key in _NPZ_CACHE:
            _NPZ_CACHE.move_to_end(cache_key)
            return _NPZ_CACHE[cache_key]
    try:
        with np.load(file, allow_pickle=False) as archive:  # no pickle from user files
            if key not in archive.files:
                raise ImageDecodeError(f"{file} has no array {key!r}; it has {sorted(archive.files)}")
            array = archive[key]
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken archive is a decode failure like any other
        raise ImageDecodeError(f"cannot read NumPy archive {file}: {_short(exc)}") from None
    array.setflags(write=False)  # shared between callers through the cache
    with _NPZ_LOCK:
        _NPZ_CACHE[cache_key] = array
        while len(_NPZ_CACHE) > _NPZ_CACHE_SIZE:
            _NPZ_CACHE.popitem(last=False)
    return array


# ---------------------------------------------------------------- array normalisation


def _array_to_rgb8(arr: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Any 2-D / HxWxC (C = 1..4) array of bool, int or float -> (HxWx3 uint8, notes)."""
    notes: list[str] = []
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ImageDecodeError(
            f"unsupported pixel array shape {tuple(arr.shape)} (expected HxW or HxWxC with C in 1..4)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageDecodeError(f"image has zero size ({arr.shape[1]}x{arr.shape[0]})")
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageDecodeError(f"unsupported pixel type {arr.dtype}")
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))

    channels = 1 if arr.ndim == 2 else arr.shape[2]
    color = arr if channels == 1 else (arr[:, :, :1] if channels == 2 else arr[:, :, :3])
    alpha = arr[:, :, -1] if channels in (2, 4) else None
    if channels == 2:
        color = color[:, :, 0]

    color8, scale_note = _scale_to_uint8(color)
    if scale_note:
        notes.append(scale_note)
    if alpha is not None:
        composited = _composite_on_black(color8, alpha)
        name = "LA" if channels == 2 else "RGBA"
        if composited is None:
            notes.append(f"{name} -> {'grayscale' if channels == 2 else 'RGB'} (alpha fully opaque, dropped)")
        else:
            color8 = composited
            notes.append(f"{name} -> {'grayscale' if channels == 2 else 'RGB'} (alpha composited on black)")
    if color8.ndim == 2:
        color8 = np.repeat(color8[:, :, None], 3, axis=2)
        notes.append("grayscale -> RGB")
    return np.ascontiguousarray(color8), notes


_BLOCK_PIXELS = 1 << 20  # compositing runs on blocks of rows, so its float temporaries stay a few MB


def _composite_on_black(color8: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """``color8`` times the alpha weight, rounded, block by block; None when the alpha is fully opaque.

    Whole-image float32 temporaries cost ~37 bytes a pixel (1.8 GB for a 400 kB, 49 MP 16-bit RGBA PNG
    upload, found by fuzzing); blocks keep the peak at the uint8 result.
    """
    out = np.empty(color8.shape, np.uint8)
    rows = max(1, _BLOCK_PIXELS // max(1, alpha.shape[1]))
    opaque = True
    for start in range(0, alpha.shape[0], rows):
        block = color8[start : start + rows]
        weight = _alpha_weight(alpha[start : start + rows])
        if weight is None:
            out[start : start + rows] = block  # x 1.0 is exact: the same pixels as the one-shot product
            continue
        opaque = False
        out[start : start + rows] = np.rint(block * (weight if block.ndim == 2 else weight[:, :, None]))
    return None if opaque else out


def _alpha_weight(alpha: np.ndarray) -> np.ndarray | None:
    """Alpha as float32 weights in [0, 1]; None when fully opaque (nothing to composite)."""
    if alpha.dtype == np.bool_:
        full = 1.0
    elif np.issubdtype(alpha.dtype, np.integer):
        full = float(np.iinfo(alpha.dtype).max)
    else:
        full = 1.0
    weight = np.nan_to_num(alpha.astype(np.float32) / full, nan=1.0, posinf=1.0, neginf=0.0)
    weight = np.clip(weight, 0.0, 1.0)
    return None if bool((weight >= 1.0).all()) else weight


def _scale_to_uint8(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """Bring any pixel type to uint8; min-max scaling for wide types (noted), exact for uint8."""
    if arr.dtype == np.uint8:
        return arr, ""
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255, "1-bit -> 8-bit"
    if np.issubdtype(arr.dtype, np.integer):
        bits = arr.dtype.itemsize * 8
        lo, hi = int(arr.min()), int(arr.max())
        if hi == lo:
            return np.zeros(arr.shape, np.uint8), f"{bits}-bit constant image -> 8-bit zeros"
        if arr.dtype.itemsize <= 2:
            # a lookup table keeps memory at one uint8 per pixel for 50 MP 16-bit images
            offset = -int(np.iinfo(arr.dtype).min)
            levels = np.arange(np.iinfo(arr.dtype).min, int(np.iinfo(arr.dtype).max) + 1, dtype=np.float64)
            lut = np.rint(np.clip((levels - lo) * (255.0 / (hi - lo)), 0, 255)).astype(np.uint8)
            return lut[arr.astype(np.int32) + offset if offset else arr], f"{bits}-bit -> 8-bit by min-max scaling"
        scaled = (arr.astype(np.float64) - lo) * (255.0 / (hi - lo))
        return np.rint(scaled).astype(np.uint8), f"{bits}-bit -> 8-bit by min-max scaling"
    # floating point: ignore NaN/inf when finding the range, then map them to black / white
    values = arr.astype(np.float32, copy=False)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8), "float image without finite values -> 8-bit zeros"
    lo, hi = float(values[finite].min()), float(values[finite].max())
    note = "float -> 8-bit by min-max scaling"
    if not finite.all():
        note += " (NaN/inf replaced)"
    if lo >= 0.0 and hi <= 1.0 and hi > lo:
        lo, hi, note = 0.0, 1.0, note.replace("min-max scaling", "x255 (values in [0, 1])")
    if hi == lo:
        return np.zeros(arr.shape, np.uint8), "float constant image -> 8-bit zeros"
    values = np.nan_to_num(values, nan=lo, posinf=hi, neginf=lo)
    scaled = (values - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8), note


def _looks_like_text(head: bytes) -> bool:
    """True when the first bytes are printable ASCII/UTF-8 (a CSV, a log, a note renamed .png)."""
    sample = head[:64]
    if not sample:
        return False
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _short(exc: BaseException) -> str:
    """An exception as one short line for a user-facing message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ============================================================================ resizing and encoding


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` without cropping (INTER_AREA shrinking, INTER_LINEAR enlarging)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"Invalid value for argument `size`. Expected a positive int. Received: {size!r}")
    arr = np.asarray(rgb)
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"Invalid value for argument `rgb`. Expected a non-empty HxW or HxWxC array. "
            f"Received: shape {tuple(arr.shape)}"
        )
    height, width = arr.shape[:2]
    if (height, width) == (size, size):
        return arr.copy()
    # area averaging avoids aliasing when shrinking; it degenerates to nearest when enlarging
    interpolation = cv2.INTER_AREA if size * size < height * width else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(arr), (int(size), int(size)), interpolation=interpolation)
    if arr.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing channel axis of length 1
        out = out[:, :, None]
    return out


def encode_png(rgb_or_gray: np.ndarray) -> bytes:
    """PNG bytes of a gray (HxW / HxWx1), RGB or RGBA uint8/uint16 array."""
    arr = np.asarray(rgb_or_gray)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"Invalid value for argument `rgb_or_gray`. Expected dtype uint8 or uint16. Received: {arr.dtype}"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGBA2BGRA)
    elif arr.ndim != 2:
        raise ValueError(
            f"Invalid value for argument `rgb_or_gray`. Expected HxW, HxWx1, HxWx3 or HxWx4. "
            f"Received: shape {tuple(arr.shape)}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"Invalid value for argument `rgb_or_gray`. Expected a non-empty image. Received: shape {tuple(arr.shape)}"
        )
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise ValueError(f"OpenCV could not encode an array of shape {tuple(arr.shape)} as PNG")
    return buf.tobytes()


def thumbnail_png(rgb: np.ndarray, max_side: int = 128) -> bytes:
    """PNG of the image shrunk (never enlarged) so its longer side is at most ``max_side``."""
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side <= 0:
        raise ValueError(f"Invalid value for argument `max_side`. Expected a positive int. Received: {max_side!r}")
    arr = np.asarray(rgb)
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"Invalid value for argument `rgb`. Expected a non-empty HxW or HxWxC array. "
            f"Received: shape {tuple(arr.shape)}"
        )
    height, width = arr.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1.0:
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        arr = cv2.resize(np.ascontiguousarray(arr), new_size, interpolation=cv2.INTER_AREA)
    return encode_png(arr)

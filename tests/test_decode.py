"""Decoding: every supported format ends in an RGB uint8 image with notes, every bad input in ImageDecodeError."""

from __future__ import annotations

import io
import os
import random
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.preprocess import (
    DecodedImage,
    ImageDecodeError,
    clear_npz_cache,
    decode_array,
    decode_image,
    encode_png,
    load_image,
    parse_npz_ref,
    probe_image,
    resize_square,
    thumbnail_png,
)

# The CI setting; a long manual run: DECODE_FUZZ_EXAMPLES=10000 pytest tests/test_decode.py -k hypothesis
FUZZ_EXAMPLES = int(os.environ.get("DECODE_FUZZ_EXAMPLES", "150"))
FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAGICS = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
    b"GIF89a",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"P5\n",
    b"\x00" * 128 + b"DICM",
]

GRADIENT = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))  # 32x64, values 0..252


# ---------------------------------------------------------------- builders (also used by fuzzing)


def pil_bytes(image: np.ndarray | Image.Image, fmt: str, **kwargs) -> bytes:
    """Encode an array or a Pillow image with Pillow."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def cv2_bytes(array: np.ndarray, ext: str) -> bytes:
    """Encode with OpenCV (keeps 16-bit depth for PNG/TIFF)."""
    ok, buf = cv2.imencode(ext, array)
    assert ok
    return buf.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a valid CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_header_size(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims width x height (a decompression-bomb shape, a few hundred bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def dicom_bytes(
    pixels: bool = True,
    photometric: str = "MONOCHROME2",
    frames: int = 1,
    window: bool = True,
    patient_id: str = "P001",
    rows: int = 20,
    cols: int = 30,
) -> bytes:
    """A minimal valid 16-bit (12 stored) DICOM file, implicit VR little endian."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.Modality = "MR"
    ds.SeriesInstanceUID = "1.2.3.4"
    if pixels:
        values = (np.arange(frames * rows * cols).reshape(frames, rows, cols) * 7 % 4096).astype(np.uint16)
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        if frames > 1:
            ds.NumberOfFrames = frames
        if window:
            ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.PixelData = values.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def sample_files() -> dict[str, bytes]:
    """One valid file per supported format and pixel type (the fuzzing seeds)."""
    rgb = np.dstack([GRADIENT, GRADIENT[::-1], np.full_like(GRADIENT, 90)])
    multipage = io.BytesIO()
    pages = [Image.fromarray(GRADIENT) for _ in range(12)]
    pages[0].save(multipage, "TIFF", save_all=True, append_images=pages[1:])
    return {
        "gray.png": pil_bytes(GRADIENT, "PNG"),
        "rgb.png": pil_bytes(rgb, "PNG"),
        "rgba.png": pil_bytes(np.dstack([rgb, GRADIENT]), "PNG"),
        "la.png": pil_bytes(Image.fromarray(np.dstack([GRADIENT, GRADIENT]), "LA"), "PNG"),
        "palette.png": pil_bytes(Image.fromarray(rgb).convert("P"), "PNG"),
        "gray16.png": cv2_bytes(GRADIENT.astype(np.uint16) * 200, ".png"),
        "rgb16.png": cv2_bytes(np.ascontiguousarray(rgb[:, :, ::-1]).astype(np.uint16) * 200, ".png"),  # cv2 wants BGR
        "gray16.tif": cv2_bytes(GRADIENT.astype(np.uint16) * 200, ".tiff"),
        "float.tif": pil_bytes(Image.fromarray(GRADIENT.astype(np.float32) / 3, "F"), "TIFF"),
        "pages.tif": multipage.getvalue(),
        "rgb.bmp": pil_bytes(rgb, "BMP"),
        "rgb.jpg": pil_bytes(rgb, "JPEG", quality=90),
        "gray.jpg": pil_bytes(GRADIENT, "JPEG"),
        "scan.dcm": dicom_bytes(),
        "frames.dcm": dicom_bytes(frames=3),
    }


def assert_rgb(decoded: DecodedImage, height: int = 32, width: int = 64) -> None:
    """The decode contract: HxWx3 uint8."""
    assert isinstance(decoded, DecodedImage)
    assert decoded.rgb.dtype == np.uint8
    assert decoded.rgb.shape == (height, width, 3)
    assert decoded.rgb.flags["C_CONTIGUOUS"]


# ---------------------------------------------------------------- formats that must decode


def test_grayscale_png_becomes_rgb_with_a_note():
    decoded = decode_image(sample_files()["gray.png"], "gray.png")
    assert_rgb(decoded)
    assert decoded.format == "PNG"
    assert decoded.original_shape == (32, 64) and decoded.original_dtype == "uint8"
    assert "grayscale -> RGB" in decoded.notes
    np.testing.assert_array_equal(decoded.rgb[:, :, 0], GRADIENT)
    np.testing.assert_array_equal(decoded.rgb[:, :, 2], GRADIENT)


@pytest.mark.parametrize("name", ["gray16.png", "gray16.tif"])
def test_16bit_grayscale_is_min_max_scaled(name):
    decoded = decode_image(sample_files()[name], name)
    assert_rgb(decoded)
    assert decoded.original_dtype == "uint16"
    assert "16-bit -> 8-bit by min-max scaling" in decoded.notes
    assert decoded.rgb.min() == 0 and decoded.rgb.max() == 255  # the full range is used


def test_16bit_colour_png_keeps_its_precision():
    decoded = decode_image(sample_files()["rgb16.png"], "rgb16.png")
    assert_rgb(decoded)
    assert decoded.original_shape == (32, 64, 3) and decoded.original_dtype == "uint16"
    assert "16-bit -> 8-bit by min-max scaling" in decoded.notes
    assert decoded.rgb[:, :, 0].max() == 255
    assert decoded.rgb[0, 0, 0] < decoded.rgb[0, -1, 0]  # channel order kept as RGB (red is the gradient)


def test_rgba_is_composited_on_black():
    decoded = decode_image(sample_files()["rgba.png"], "rgba.png")
    assert_rgb(decoded)
    assert "RGBA -> RGB (alpha composited on black)" in decoded.notes
    assert decoded.rgb[:, 0].max() == 0  # alpha 0 in the first column -> black
    assert decoded.rgb[0, -1, 2] == round(90 * 252 / 255)


def test_opaque_alpha_is_dropped_with_a_note():
    rgba = np.dstack([GRADIENT, GRADIENT, GRADIENT, np.full_like(GRADIENT, 255)])
    decoded = decode_image(pil_bytes(rgba, "PNG"))
    assert "RGBA -> RGB (alpha fully opaque, dropped)" in decoded.notes
    np.testing.assert_array_equal(decoded.rgb[:, :, 1], GRADIENT)


def test_gray_alpha_and_palette_and_bmp_and_gif():
    files = sample_files()
    la = decode_image(files["la.png"])
    assert_rgb(la)
    assert "LA -> grayscale (alpha composited on black)" in la.notes
    palette = decode_image(files["palette.png"])
    assert_rgb(palette)
    assert "palette -> RGB" in palette.notes
    bmp = decode_image(files["rgb.bmp"])
    assert_rgb(bmp)
    assert bmp.format == "BMP" and bmp.notes == ()
    gif = decode_image(pil_bytes(GRADIENT, "GIF"))
    assert_rgb(gif)
    assert gif.format == "GIF"


def test_jpeg_colour_and_gray():
    files = sample_files()
    colour = decode_image(files["rgb.jpg"], "rgb.jpg")
    assert_rgb(colour)
    assert colour.format == "JPEG"
    assert abs(int(colour.rgb[5, 40, 2]) - 90) < 8  # lossy, but the blue channel stays near 90
    gray = decode_image(files["gray.jpg"])
    assert "grayscale -> RGB" in gray.notes


def test_multipage_tiff_uses_the_first_page():
    decoded = decode_image(sample_files()["pages.tif"], "pages.tif")
    assert_rgb(decoded)
    assert "1 frame of 12 used" in decoded.notes


def test_float_tiff_and_float_arrays():
    decoded = decode_image(sample_files()["float.tif"])
    assert_rgb(decoded)
    assert decoded.original_dtype == "float32"
    assert "float -> 8-bit by min-max scaling" in decoded.notes
    unit = decode_array(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4))
    assert unit.rgb.max() == 255 and unit.rgb.min() == 0
    assert "float -> 8-bit by x255 (values in [0, 1])" in unit.notes
    nan = decode_array(np.array([[np.nan, 1.0], [2.0, np.inf]]))
    assert "NaN/inf replaced" in nan.notes[0]
    assert decode_array(np.zeros((4, 4), np.uint16)).rgb.max() == 0  # constant: no division by zero


def test_dicom_with_pixel_data():
    decoded = decode_image(dicom_bytes(), "scan.dcm")
    assert_rgb(decoded, 20, 30)
    assert decoded.format == "DICOM"
    assert decoded.original_dtype == "uint16"
    assert "DICOM: applied rescale slope/intercept and window" in decoded.notes
    assert decoded.rgb.max() > 200


def test_dicom_detected_by_magic_without_a_name_and_monochrome1_inverted():
    normal = decode_image(dicom_bytes())
    inverted = decode_image(dicom_bytes(photometric="MONOCHROME1"))
    assert any("MONOCHROME1 inverted" in n for n in inverted.notes)
    np.testing.assert_array_equal(inverted.rgb, 255 - normal.rgb)


def test_multiframe_dicom_uses_the_first_frame():
    decoded = decode_image(dicom_bytes(frames=3), "frames.dcm")
    assert_rgb(decoded, 20, 30)
    assert "1 frame of 3 used" in decoded.notes


def test_dicom_without_window_is_min_max_scaled():
    decoded = decode_image(dicom_bytes(window=False))
    assert "DICOM: applied rescale slope/intercept and min-max scaling" in decoded.notes
    assert decoded.rgb.min() == 0 and decoded.rgb.max() == 255


# ---------------------------------------------------------------- inputs that must be refused


def test_dicom_without_pixel_data():
    with pytest.raises(ImageDecodeError, match="DICOM has no pixel data"):
        decode_image(dicom_bytes(pixels=False), "report.dcm")


def test_truncated_dicom_pixel_data():
    data = dicom_bytes()
    with pytest.raises(ImageDecodeError, match="truncated DICOM"):
        decode_image(data[:-100], "cut.dcm")


def test_garbage_named_dcm():
    with pytest.raises(ImageDecodeError, match="not a valid DICOM file"):
        decode_image(b"hello, not dicom", "fake.dcm")


def test_pdf_renamed_png():
    with pytest.raises(ImageDecodeError, match=r"not an image: the file starts with %PDF \(a PDF renamed\?\)"):
        decode_image(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "scan.png")


def test_text_and_html_renamed_png():
    with pytest.raises(ImageDecodeError, match="looks like text"):
        decode_image(b"patient,label\n1,benign\n", "labels.png")
    with pytest.raises(ImageDecodeError, match="HTML/XML/SVG"):
        decode_image(b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "image.png")


def test_truncated_jpeg():
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    data = pil_bytes(noise, "JPEG")
    with pytest.raises(ImageDecodeError, match=r"^truncated JPEG"):
        decode_image(data[: len(data) // 2], "cut.jpg")


def test_truncated_png():
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    data = pil_bytes(noise, "PNG")
    with pytest.raises(ImageDecodeError, match=r"^truncated PNG"):
        decode_image(data[: len(data) // 2], "cut.png")


def test_empty_file():
    with pytest.raises(ImageDecodeError, match=r"^empty file"):
        decode_image(b"", "empty.jpg")


def test_huge_dimensions_are_refused_from_the_header_quickly():
    data = png_with_header_size(30000, 30000)
    assert len(data) < 1000
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match=r"image is 30000x30000 = 900 MP, above the limit of 50 MP"):
        decode_image(data, "bomb.png")
    assert time.perf_counter() - start < 0.5


def test_max_pixels_is_respected_for_every_format():
    files = sample_files()
    for name in ("rgb.png", "rgb.jpg", "gray16.tif", "rgb.bmp", "scan.dcm"):
        with pytest.raises(ImageDecodeError, match=r"^image is \d+x\d+ = .* MP, above the limit of 0.0005 MP"):
            decode_image(files[name], name, max_pixels=500)


def test_zero_size_png_header():
    with pytest.raises(ImageDecodeError, match=r"PNG has zero size \(0x5\)"):
        decode_image(png_with_header_size(0, 5))


def test_random_bytes():
    data = bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8))
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode_image(data, "noise.png")


def test_corrupt_png_signature_with_garbage_body():
    with pytest.raises(ImageDecodeError, match="PNG"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)


def test_argument_validation():
    with pytest.raises(TypeError, match="argument `data`"):
        decode_image("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="argument `max_pixels`"):
        decode_image(b"x", max_pixels=0)


def decode_or_typed_error(data: bytes, name: str = "") -> DecodedImage | None:
    """The fuzz oracle: an RGB uint8 image or an ImageDecodeError with one line, within 2 s."""
    start = time.perf_counter()
    try:
        decoded = decode_image(data, name, max_pixels=4_000_000)
    except ImageDecodeError as exc:
        assert str(exc) and "\n" not in str(exc)
        decoded = None
    else:
        assert decoded.rgb.dtype == np.uint8 and decoded.rgb.ndim == 3 and decoded.rgb.shape[2] == 3
    assert time.perf_counter() - start < 2.0
    return decoded


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt TIFF tags before failing
@FUZZ_SETTINGS
@given(magic=st.sampled_from(MAGICS), body=st.binary(max_size=4096), name=st.sampled_from(["", "x.png", "x.dcm"]))
def test_hypothesis_random_bytes_behind_real_magic(magic, body, name):
    decode_or_typed_error(magic + body, name)


@FUZZ_SETTINGS
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    channels=st.sampled_from([1, 3, 4]),
    dtype=st.sampled_from(["uint8", "uint16", "float32"]),
    ext=st.sampled_from([".png", ".tiff"]),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_valid_images_of_any_shape_and_depth_decode(height, width, channels, dtype, ext, seed):
    if dtype == "float32" and ext == ".png":
        ext = ".tiff"  # PNG has no float samples
    rng = np.random.default_rng(seed)
    high = 1.0 if dtype == "float32" else np.iinfo(dtype).max
    shape = (height, width) if channels == 1 else (height, width, channels)
    array = (rng.random(shape) * high).astype(dtype)
    decoded = decode_or_typed_error(cv2_bytes(array, ext), "x" + ext)
    assert decoded is not None and decoded.rgb.shape == (height, width, 3)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_mutated_inputs_only_raise_image_decode_error(tmp_path):
    """A short, seeded fuzz of decode_image and probe_image: bit flips and truncations of every seed."""
    rng = random.Random(7)
    seeds = sample_files()
    outcomes = {"image": 0, "error": 0}
    for name, data in seeds.items():
        for _ in range(25):
            mutated = bytearray(data)
            if rng.random() < 0.5:
                for _ in range(rng.randint(1, 6)):
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            else:
                del mutated[rng.randrange(1, len(mutated)) :]
            (tmp_path / name).write_bytes(bytes(mutated))
            try:
                probe_image(tmp_path / name)
            except ImageDecodeError:
                pass
            start = time.perf_counter()
            try:
                decoded = decode_image(bytes(mutated), name, max_pixels=4_000_000)
                assert decoded.rgb.dtype == np.uint8 and decoded.rgb.ndim == 3 and decoded.rgb.shape[2] == 3
                outcomes["image"] += 1
            except ImageDecodeError as exc:
                assert str(exc) and "\n" not in str(exc)
                outcomes["error"] += 1
            assert time.perf_counter() - start < 2.0
    assert outcomes["image"] > 0 and outcomes["error"] > 0


# ---------------------------------------------------------------- header probe (used by ingestion)


def test_probe_image_reads_sizes_from_headers(tmp_path):
    files = dict(sample_files())
    exif = Image.Exif()
    exif[0x010E] = "x" * 30000  # a large APP1 segment before the frame header
    files["exif.jpg"] = pil_bytes(GRADIENT, "JPEG", exif=exif.tobytes())
    files["anim.gif"] = pil_bytes(GRADIENT, "GIF")
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        fmt, width, height = probe_image(path)
        if fmt != "DICOM":
            assert (width, height) == (64, 32), name


def test_probe_image_refuses_corrupt_headers(tmp_path):
    png = sample_files()["gray.png"]
    cases = {
        "crc.png": (png[:23] + b"\x21" + png[24:], "IHDR checksum mismatch"),
        "cut.jpg": (sample_files()["rgb.jpg"][:40], "corrupt JPEG|truncated JPEG"),
        "pdf.png": (b"%PDF-1.4 ...", "PDF renamed"),
        "zero.png": (png_with_header_size(0, 7), r"PNG has zero size \(0x7\)"),
        "empty.png": (b"", "empty file"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageDecodeError, match=message):
            probe_image(tmp_path / name)
    with pytest.raises(ImageDecodeError, match="cannot read"):
        probe_image(tmp_path / "missing.png")


# ---------------------------------------------------------------- files, archives, resize, encode


def test_load_image_from_path_and_missing_path(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_bytes(dicom_bytes())
    assert load_image(path).format == "DICOM"
    with pytest.raises(ImageDecodeError, match="cannot read .*missing.png"):
        load_image(tmp_path / "missing.png")


def test_load_image_from_npz_reference(tmp_path):
    clear_npz_cache()
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    archive = tmp_path / "mnist.npz"
    np.savez(archive, test_images=images, test_labels=np.array([[0], [1], [0]]))
    ref = f"{archive}::test_images[2]"
    assert parse_npz_ref(ref) == (str(archive), "test_images", 2)
    decoded = load_image(ref)
    assert decoded.format == "NPZ" and decoded.original_shape == (4, 5)
    np.testing.assert_array_equal(decoded.rgb[:, :, 0], images[2])
    with pytest.raises(ImageDecodeError, match="index out of range"):
        load_image(f"{archive}::test_images[3]")
    with pytest.raises(ImageDecodeError, match="has no array 'val_images'"):
        load_image(f"{archive}::val_images[0]")


def test_resize_square_shrinks_and_enlarges_without_crop():
    rgb = decode_image(sample_files()["rgb.png"]).rgb
    small = resize_square(rgb, 16)
    big = resize_square(rgb, 100)
    assert small.shape == (16, 16, 3) and big.shape == (100, 100, 3)
    assert small.dtype == np.uint8
    assert small[:, 0, 0].mean() < 20 and small[:, -1, 0].mean() > 230  # both ends kept: no crop
    with pytest.raises(ValueError, match="argument `size`"):
        resize_square(rgb, 0)


def test_encode_png_round_trip_and_thumbnail():
    rgb = decode_image(sample_files()["rgb.png"]).rgb
    assert np.array_equal(decode_image(encode_png(rgb)).rgb, rgb)
    assert decode_image(encode_png(GRADIENT)).rgb.shape == (32, 64, 3)
    thumb = decode_image(thumbnail_png(rgb, max_side=16))
    assert thumb.rgb.shape == (8, 16, 3)
    assert decode_image(thumbnail_png(rgb, max_side=500)).rgb.shape == (32, 64, 3)  # never enlarged
    with pytest.raises(ValueError, match="Expected dtype uint8 or uint16"):
        encode_png(np.zeros((4, 4), np.float32))

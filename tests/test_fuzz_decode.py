"""Upload fuzzing of `pipeline.preprocess.decode_image`, the decode path behind live inference and previews.

Every input must end in a `DecodedImage` (HxWx3 uint8) or an `ImageDecodeError` with a one-line message:
never another exception, never a crash of the interpreter, never more than 2 s of CPU per input, and the
worker's peak RSS must stay under a set bound.

Inputs run in a watchdog worker process (`DecodeWorker`): it decodes one input at a time, times it
(CPU and wall clock) and reports its peak RSS (`resource.getrusage`); the test process kills and restarts
it when an input hangs past the wall-clock limit or kills the interpreter. A failing input is saved to
`tests/fuzz_corpus/` and the whole corpus is replayed as regression tests.

Inputs: random bytes, seeded mutations (bit flips, truncation, interesting integers, splices, header-aware
rewrites with fixed PNG CRCs) of valid PNG/JPEG/TIFF/BMP/GIF/WebP/PNM/DICOM files made here with
OpenCV, Pillow and pydicom (1/2/3/4 channels, 8/16-bit, float, palette, multi-page, compressed), headers
claiming huge or zero dimensions (decompression bombs), hypothesis-generated arrays and DICOM attributes.

Settings: `FUZZ_EXAMPLES` (CI default 800) seeded mutations, and FUZZ_EXAMPLES // 8 (at least 60) examples
for each hypothesis test. The long manual run, >= 10,000 inputs::

    FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest tests/test_fuzz_decode.py -s

An optional atheris (libFuzzer) harness runs when atheris is installed (`FUZZ_ATHERIS_RUNS`, default 1000).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "800"))
HYPOTHESIS_EXAMPLES = max(60, FUZZ_EXAMPLES // 8)
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20240611"))
MAX_PIXELS = 4_000_000  # the fuzz-time pixel limit: big enough for every seed, small enough to stay fast
CPU_LIMIT_S = 2.0  # per input: the "never a hang over 2 s" rule, measured as CPU time (the machine is shared)
# Hard-hang watchdog: wall clock, generous because other jobs share the 2 cores; an input past it is a hang.
WALL_LIMIT_S = float(os.environ.get("FUZZ_WALL_LIMIT_S", "20"))
RSS_GROWTH_LIMIT_MB = float(os.environ.get("FUZZ_RSS_GROWTH_MB", "400"))  # worker peak RSS over its warm-up peak
WORKER_AS_LIMIT = 8 << 30  # address-space cap of the worker: a safety net for the shared machine only

HYP_SETTINGS = settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, derandomize=True, database=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ============================================================================ the watchdog worker

WORKER_CODE = textwrap.dedent(r"""
    import json, os, resource, struct, sys, time, traceback, warnings
    limit = int(sys.argv[2])
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass
    sys.path.insert(0, sys.argv[1])
    warnings.simplefilter("ignore")
    import numpy as np
    from pipeline.preprocess import DecodedImage, ImageDecodeError, decode_image
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def read_exact(n):
        buf = b""
        while len(buf) < n:
            chunk = stdin.read(n - len(buf))
            if not chunk:
                raise SystemExit(0)
            buf += chunk
        return buf

    stdout.write(b'{"ready": true}\n'); stdout.flush()
    while True:
        n_name, n_data, max_pixels = struct.unpack("<IIQ", read_exact(16))
        name = read_exact(n_name).decode("utf-8")
        data = read_exact(n_data)
        out = {}
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            decoded = decode_image(data, name, max_pixels=max_pixels)
        except ImageDecodeError as exc:
            out["outcome"] = "error"
            out["message"] = str(exc)
        except BaseException as exc:  # the bug being hunted: anything but ImageDecodeError
            out["outcome"] = "exception"
            out["message"] = f"{type(exc).__name__}: {exc}"[:500]
            out["traceback"] = traceback.format_exc()[-3000:]
        else:
            rgb = decoded.rgb
            good = (isinstance(decoded, DecodedImage) and isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8
                    and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.shape[0] > 0 and rgb.shape[1] > 0
                    and rgb.flags.c_contiguous)
            out["outcome"] = "image" if good else "bad-image"
            if not good:
                out["message"] = (f"decode_image returned shape {getattr(rgb, 'shape', None)}, dtype "
                                  f"{getattr(rgb, 'dtype', None)}: expected HxWx3 uint8, C-contiguous")
            out["shape"] = list(rgb.shape)
            out["dtype"] = str(rgb.dtype)
        out["cpu"] = time.process_time() - cpu
        out["wall"] = time.perf_counter() - wall
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        stdout.write(json.dumps(out).encode() + b"\n"); stdout.flush()
""")


@dataclass
class Result:
    """What one input did: outcome is image | error | exception | bad-image | hang | crash."""

    outcome: str
    message: str = ""
    cpu: float = 0.0
    wall: float = 0.0
    maxrss_mb: float = 0.0
    rss_growth_mb: float = 0.0  # the worker's peak RSS after this input, over its peak after the first one
    shape: tuple[int, ...] = ()
    traceback: str = ""


@dataclass
class Tally:
    """Counts of a fuzz session, and the failures (with the corpus file each was saved to)."""

    inputs: int = 0
    images: int = 0
    errors: int = 0
    max_cpu: float = 0.0
    max_wall: float = 0.0
    failures: list[str] = field(default_factory=list)

    def add(self, result: Result) -> None:
        """Count one result."""
        self.inputs += 1
        self.images += result.outcome == "image"
        self.errors += result.outcome == "error"
        self.max_cpu = max(self.max_cpu, result.cpu)
        self.max_wall = max(self.max_wall, result.wall)


class DecodeWorker:
    """A subprocess that decodes inputs one at a time; killed and restarted on a hang or a crash."""

    def __init__(self, wall_limit: float = WALL_LIMIT_S) -> None:
        self.wall_limit = wall_limit
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.baseline_mb: float | None = None
        self.peak_mb = 0.0
        self._start()

    def _start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENCV_FOR_THREADS_NUM": "1", "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER_CODE, str(REPO_ROOT), str(WORKER_AS_LIMIT)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, cwd=REPO_ROOT)
        line = self._readline(120.0)
        if not line or b"ready" not in line:
            self.close()
            raise RuntimeError("the decode worker did not start")

    def _readline(self, timeout: float) -> bytes | None:
        """One line from the worker; None on timeout, b"" at end of file (the worker died)."""
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline()

    def restart(self) -> None:
        """Replace the worker process with a fresh one."""
        self.close()
        self.restarts += 1
        self.baseline_mb = None  # a fresh interpreter has a fresh peak
        self._start()

    def decode(self, data: bytes, name: str = "", max_pixels: int = MAX_PIXELS) -> Result:
        """Decode one input in the worker; a hang or a dead worker becomes a Result, never an exception."""
        assert self.proc is not None and self.proc.stdin is not None
        raw_name = name.encode("utf-8")
        try:
            self.proc.stdin.write(struct.pack("<IIQ", len(raw_name), len(data), max_pixels) + raw_name + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            code = self.proc.poll()
            self.restart()
            return Result("crash", f"worker died before reading the input (exit code {code})")
        line = self._readline(self.wall_limit)
        if line is None:
            self.restart()
            return Result("hang", f"no answer within {self.wall_limit:.0f} s (killed)", wall=self.wall_limit)
        if not line:
            code = self.proc.wait(timeout=30)
            self.restart()
            return Result("crash", f"the worker died (exit code {code}, signal {-code if code < 0 else 0})")
        info = json.loads(line)
        result = Result(info["outcome"], info.get("message", ""), cpu=info["cpu"], wall=info["wall"],
                        maxrss_mb=info["maxrss_mb"], shape=tuple(info.get("shape", ())),
                        traceback=info.get("traceback", ""))
        if self.baseline_mb is None:
            self.baseline_mb = result.maxrss_mb
        # ru_maxrss is a high-water mark: the input that pushes it past the bound is the one that used the memory
        result.rss_growth_mb = result.maxrss_mb - self.baseline_mb
        self.peak_mb = max(self.peak_mb, result.rss_growth_mb)
        return result

    def close(self) -> None:
        """Stop the worker process."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=30)
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.proc = None


def failure_reason(result: Result, data: bytes, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why `result` breaks the decode contract, or None when it keeps it."""
    if result.outcome == "error":
        if not result.message or "\n" in result.message:
            return f"ImageDecodeError message must be one non-empty line, got {result.message!r}"
    elif result.outcome == "image":
        if len(result.shape) != 3 or result.shape[0] * result.shape[1] > max_pixels:
            return f"decoded shape {result.shape} breaks the {max_pixels}-pixel limit"
    else:
        return f"{result.outcome}: {result.message}"
    if result.cpu > CPU_LIMIT_S:
        return f"took {result.cpu:.2f} s of CPU (limit {CPU_LIMIT_S} s) for {len(data)} bytes"
    if result.rss_growth_mb > RSS_GROWTH_LIMIT_MB:
        return (f"peak RSS grew to {result.rss_growth_mb:.0f} MB over the worker's baseline (limit "
                f"{RSS_GROWTH_LIMIT_MB:.0f} MB) on {len(data)} bytes")
    return None


def save_to_corpus(data: bytes, name: str, reason: str) -> Path:
    """Keep a failing input (and why it failed) in tests/fuzz_corpus/ for the regression replay."""
    CORPUS.mkdir(exist_ok=True)
    ext = os.path.splitext(name)[1].lower() if name else ""
    stem = f"fail-{hashlib.sha1(data).hexdigest()[:12]}"
    existing = sorted(CORPUS.glob(f"{stem}.*"))
    path = next((p for p in existing if p.suffix != ".txt"), CORPUS / f"{stem}{ext or '.bin'}")
    if not path.exists():
        path.write_bytes(data)
        (CORPUS / f"{stem}.txt").write_text(f"decoded as {name!r}: {reason}\n", encoding="utf-8")
    return path


def check(worker: DecodeWorker, tally: Tally, data: bytes, name: str = "", max_pixels: int = MAX_PIXELS) -> Result:
    """Decode one input through the worker, count it, and record (and save) a contract break."""
    result = worker.decode(data, name, max_pixels)
    tally.add(result)
    reason = failure_reason(result, data, max_pixels)
    if reason is not None:
        path = save_to_corpus(data, name, reason)
        tally.failures.append(f"{path.name}: {reason}")
        if result.rss_growth_mb > RSS_GROWTH_LIMIT_MB:
            worker.restart()  # a fresh high-water mark, so the next input is judged on its own
    return result


@pytest.fixture(scope="module")
def worker() -> Iterator[DecodeWorker]:
    """One decode worker for the module (restarted by itself after a hang or a crash)."""
    w = DecodeWorker()
    yield w
    w.close()


@pytest.fixture(scope="module")
def tally(worker: DecodeWorker) -> Iterator[Tally]:
    """Counts across the module, printed at the end (run with -s to see them)."""
    t = Tally()
    yield t
    print(f"\n[fuzz] inputs tried: {t.inputs} (images {t.images}, typed errors {t.errors}), failures: "
          f"{len(t.failures)}, max CPU per input {t.max_cpu:.3f} s, max wall {t.max_wall:.3f} s, "
          f"worker peak RSS growth {worker.peak_mb:.0f} MB, worker restarts {worker.restarts}")


def assert_no_failures(tally: Tally, since: int) -> None:
    """Fail with every contract break recorded after index `since`."""
    new = tally.failures[since:]
    assert not new, f"{len(new)} inputs broke the decode contract (saved to tests/fuzz_corpus/):\n" + "\n".join(new[:20])


# ============================================================================ seed files (made here)

def pil_bytes(image: np.ndarray | Image.Image, fmt: str, **kwargs) -> bytes:
    """Encode an array or a Pillow image with Pillow."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def cv2_bytes(array: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    """Encode with OpenCV (keeps 16-bit depth for PNG/TIFF/PGM)."""
    ok, buf = cv2.imencode(ext, array, params or [])
    assert ok, (ext, array.shape, array.dtype)
    return buf.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a valid CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int, depth: int = 8, colour: int = 0, idat: bytes | None = None) -> bytes:
    """A PNG whose IHDR claims width x height, with a few bytes of (compressed) data: a bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width & 0xFFFFFFFF, height & 0xFFFFFFFF, depth, colour, 0, 0, 0)
    body = zlib.compress(b"\x00" * 4096, 9) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC of a (possibly mutated) PNG so mutations reach the decoder."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out, pos = bytearray(data[:8]), 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        end = pos + 12 + length
        if end > len(data):
            break
        kind_payload = data[pos + 4:end - 4]
        out += data[pos:end - 4] + struct.pack(">I", zlib.crc32(kind_payload))
        pos = end
    out += data[pos:]
    return bytes(out)


def tiff_header_only(width: int, height: int, bits: int = 8, samples: int = 1, photometric: int = 1,
                     compression: int = 1, big_endian: bool = False) -> bytes:
    """A hand-made classic TIFF whose first IFD claims width x height, with one tiny strip."""
    o = ">" if big_endian else "<"
    strip = b"\x00" * 64
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, compression),
               (262, 3, 1, photometric), (273, 4, 1, 0), (277, 3, 1, samples), (278, 4, 1, height),
               (279, 4, 1, len(strip))]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    ifd = struct.pack(o + "H", len(entries))
    for tag, typ, count, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack(o + "H", value & 0xFFFF) + b"\x00\x00" if typ == 3 else struct.pack(o + "I", value & 0xFFFFFFFF)
        ifd += struct.pack(o + "HHI", tag, typ, count) + packed
    ifd += struct.pack(o + "I", 0)
    magic = b"MM\x00*" if big_endian else b"II*\x00"
    return magic + struct.pack(o + "I", ifd_offset) + ifd + strip


def bmp_header_only(width: int, height: int, bits: int = 24) -> bytes:
    """A BMP whose info header claims width x height (negative height = top-down), with 64 bytes of pixels."""
    pixels = b"\x00" * 64
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, len(pixels), 2835, 2835, 0, 0)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


def gif_header_only(width: int, height: int) -> bytes:
    """A GIF whose logical screen and image descriptor claim width x height."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return head + image + b"\x3b"


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG with its SOF frame header rewritten to claim width x height."""
    pos = 2
    while pos + 4 <= len(jpeg):
        marker, length = jpeg[pos + 1], struct.unpack(">H", jpeg[pos + 2:pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return jpeg[:pos + 5] + struct.pack(">HH", height, width) + jpeg[pos + 9:]
        pos += 2 + length
    raise AssertionError("no SOF marker found")


def dicom_bytes(rows: int = 12, cols: int = 10, frames: int = 1, samples: int = 1, bits: int = 16,
                signed: bool = False, photometric: str | None = None, pixels: bytes | None = None,
                explicit: bool = False, rle: bool = False, **extra: object) -> bytes:
    """A small DICOM image; `pixels` overrides the pixel data, `extra` sets (or breaks) any attribute."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["fuzz", str(rows), str(cols)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if explicit or rle else ImplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = "FUZZ", "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.PhotometricInterpretation = photometric or ("RGB" if samples == 3 else "MONOCHROME2")
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = int(signed)
    if frames > 1:
        ds.NumberOfFrames = frames
    dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32}[bits]
    if signed:
        dtype = {8: np.int8, 16: np.int16, 32: np.int32}[bits]
    shape = (frames, rows, cols, samples) if samples > 1 else (frames, rows, cols)
    if pixels is None or rle:
        values = (np.arange(int(np.prod(shape))) * 37 % 251).reshape(shape).astype(dtype)
        pixels = values.tobytes() if pixels is None else pixels
    ds.PixelData = pixels
    for key, value in extra.items():
        setattr(ds, key, value)
    if rle:
        ds.compress(RLELossless, values if frames > 1 else values[0], generate_instance_uid=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _gradient(h: int = 24, w: int = 40) -> np.ndarray:
    return (np.add.outer(np.arange(h) * 5, np.arange(w) * 3) % 256).astype(np.uint8)


def seed_files() -> dict[str, bytes]:
    """One small valid file per supported format, channel count and pixel type: the mutation seeds."""
    g = _gradient()
    rgb = np.dstack([g, g[::-1], 255 - g])
    rgba = np.dstack([rgb, g])
    g16 = g.astype(np.uint16) * 257
    rgb16 = rgb.astype(np.uint16) * 250
    multipage = io.BytesIO()
    pages = [Image.fromarray(g) for _ in range(3)]
    pages[0].save(multipage, "TIFF", save_all=True, append_images=pages[1:])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: exercises the EXIF transpose
    palette = Image.fromarray(rgb).convert("P")
    seeds = {
        "gray.png": cv2_bytes(g, ".png"),
        "rgb.png": pil_bytes(rgb, "PNG"),
        "rgba.png": pil_bytes(rgba, "PNG"),
        "la.png": pil_bytes(Image.fromarray(np.dstack([g, g[::-1]]), "LA"), "PNG"),
        "palette_trns.png": pil_bytes(palette, "PNG", transparency=0),
        "bilevel.png": pil_bytes(Image.fromarray(g > 100), "PNG"),
        "optimized.png": pil_bytes(g, "PNG", optimize=True),
        "gray16.png": cv2_bytes(g16, ".png"),
        "rgb16.png": cv2_bytes(rgb16, ".png"),
        "rgba16.png": cv2_bytes(np.dstack([rgb16, g16]), ".png"),
        "rgb.jpg": pil_bytes(rgb, "JPEG", quality=80),
        "gray.jpg": pil_bytes(g, "JPEG"),
        "progressive.jpg": pil_bytes(rgb, "JPEG", progressive=True),
        "cmyk.jpg": pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
        "exif.jpg": pil_bytes(rgb, "JPEG", exif=exif.tobytes()),
        "gray.tif": pil_bytes(g, "TIFF"),
        "gray16.tif": cv2_bytes(g16, ".tiff"),
        "rgb.tif": pil_bytes(rgb, "TIFF", compression="tiff_lzw"),
        "rgb16.tif": cv2_bytes(rgb16, ".tiff"),
        "rgba.tif": pil_bytes(rgba, "TIFF", compression="tiff_deflate"),
        "two_channel.tif": pil_bytes(Image.fromarray(np.dstack([g, g[::-1]]), "LA"), "TIFF"),
        "float.tif": pil_bytes(Image.fromarray(g.astype(np.float32) / 7, "F"), "TIFF"),
        "pages.tif": multipage.getvalue(),
        "packbits.tif": pil_bytes(g, "TIFF", compression="packbits"),
        "rgb.bmp": pil_bytes(rgb, "BMP"),
        "gray.bmp": pil_bytes(g, "BMP"),
        "palette.bmp": pil_bytes(palette, "BMP"),
        "rgba.bmp": cv2_bytes(np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]]), ".bmp"),
        "anim.gif": pil_bytes(palette, "GIF", save_all=True, append_images=[palette.rotate(90)]),
        "rgb.webp": pil_bytes(rgb, "WEBP", lossless=True),
        "gray16.pgm": cv2_bytes(g16, ".pgm"),
        "rgb.ppm": cv2_bytes(rgb, ".ppm"),
        "mono16.dcm": dicom_bytes(WindowCenter=2048, WindowWidth=4096, RescaleSlope=1, RescaleIntercept=-10),
        "mono1.dcm": dicom_bytes(photometric="MONOCHROME1", bits=8),
        "signed.dcm": dicom_bytes(signed=True, explicit=True),
        "rgb.dcm": dicom_bytes(samples=3, bits=8, explicit=True),
        "frames.dcm": dicom_bytes(frames=3),
        "rle.dcm": dicom_bytes(rle=True),
        "u32.dcm": dicom_bytes(bits=32),
    }
    return seeds


# ---------------------------------------------------------------- hostile headers (bombs, zero sizes)

def bomb_files() -> dict[str, bytes]:
    """Headers claiming zero, huge or absurd sizes in every format, a few hundred bytes each."""
    jpeg = pil_bytes(_gradient(), "JPEG")
    out: dict[str, bytes] = {}
    for w, h in ((0, 5), (5, 0), (0, 0), (65535, 65535), (1, 2**31 - 1), (2**31 - 1, 2**31 - 1),
                 (2**32 - 1, 2**32 - 1), (2001, 2000), (100_000, 1)):
        out[f"png_{w}x{h}.png"] = png_header_only(w, h)
        out[f"png16rgba_{w}x{h}.png"] = png_header_only(w, h, depth=16, colour=6)
        out[f"tiff_{w}x{h}.tif"] = tiff_header_only(w, h)
        out[f"tiff16_{w}x{h}_be.tif"] = tiff_header_only(w, h, bits=16, big_endian=True)
        out[f"bmp_{w}x{h}.bmp"] = bmp_header_only(min(w, 2**31 - 1), min(h, 2**31 - 1))
        out[f"gif_{w}x{h}.gif"] = gif_header_only(min(w, 65535), min(h, 65535))
        out[f"jpeg_{w}x{h}.jpg"] = jpeg_with_size(jpeg, min(w, 65535), min(h, 65535))
    out["bmp_negative_width.bmp"] = bmp_header_only(-40, 24)
    out["bmp_topdown_huge.bmp"] = bmp_header_only(50_000, -50_000)
    out["bmp_1bit_huge.bmp"] = bmp_header_only(60_000, 60_000, bits=1)
    out["tiff_rgb_lzw_huge.tif"] = tiff_header_only(30_000, 30_000, samples=3, photometric=2, compression=5)
    for rows, cols in ((0, 10), (10, 0), (65535, 65535), (3000, 3000)):
        out[f"dicom_{rows}x{cols}.dcm"] = dicom_bytes(rows=rows, cols=cols, pixels=b"\x00" * 240)
    out["dicom_frames_huge.dcm"] = dicom_bytes(NumberOfFrames=2**31 - 1)
    out["dicom_frames_zero.dcm"] = dicom_bytes(NumberOfFrames=0)
    # real compressed bombs: few kB that inflate to more pixels than the limit
    out["zeros_3000x3000.png"] = cv2_bytes(np.zeros((3000, 3000), np.uint8), ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9])
    out["zeros_2100x2000_rgba16.png"] = cv2_bytes(np.zeros((2100, 2000, 4), np.uint16), ".png",
                                                  [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


# ============================================================================ mutations

INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFF)


def _flip_bits(rng: random.Random, b: bytearray, seeds: list[bytes]) -> None:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)


def _set_bytes(rng: random.Random, b: bytearray, seeds: list[bytes]) -> None:
    for _ in range(rng.randint(1, 8)):
        b[rng.randrange(len(b))] = rng.randrange(256)


def _interesting_int(rng: random.Random, b: bytearray, seeds: list[bytes]) -> None:
    width = rng.choice((1, 2, 4))
    value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
    fmt = {1: "B", 2: "H", 4: "I"}[width]
    raw = struct.pack(rng.choice("<>") + fmt, value)
    # header bytes (sizes, depths, tags) matter most: half of the writes land in the first 160 bytes
    limit = min(len(b), 160) if rng.random() < 0.5 else len(b)
    i = rng.randrange(max(1, limit - width + 1))
    b[i:i + width] = raw


def _truncate(rng: random.Random, b: bytearray, seeds: list[bytes]) -> None:
    cut = rng.randrange(1, len(b)) if rng.random() < 0.6 else max(1, len(b) - rng.randint(1, 64))
    del b[cut:]


def _delete_slice(rng: random.Random, b: bytearray, seeds: list[bytes]) -> None:
    i = rng.randrange(len(b))
    del b[i:i + rng.randint(1, 64)]


def _insert_random(rng: random.Random, b: bytearray, seeds: list[bytes]) -> None:
    i = rng.randrange(len(b) + 1)
    b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))


def _duplicate_slice(rng: random.Random, b: bytearray, seeds: list[bytes]) -> None:
    i = rng.randrange(len(b))
    chunk = b[i:i + rng.randint(1, 256)]
    j = rng.randrange(len(b) + 1)
    b[j:j] = chunk * rng.randint(1, 4)


def _splice(rng: random.Random, b: bytearray, seeds: list[bytes]) -> None:
    other = rng.choice(seeds)
    cut = rng.randrange(1, len(b) + 1)
    b[cut:] = other[rng.randrange(len(other)):]


MUTATORS: tuple[Callable[[random.Random, bytearray, list[bytes]], None], ...] = (
    _flip_bits, _set_bytes, _interesting_int, _interesting_int, _truncate, _delete_slice, _insert_random,
    _duplicate_slice, _splice)


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """1-3 stacked random mutations; PNG CRCs are fixed half of the time so the damage reaches the decoder."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not b:
            b += bytes([rng.randrange(256)])
        rng.choice(MUTATORS)(rng, b, seeds)
    out = bytes(b)
    return fix_png_crcs(out) if rng.random() < 0.5 else out


DICOM_ATTRIBUTES: dict[str, tuple[object, ...]] = {
    "BitsAllocated": (0, 1, 8, 12, 16, 24, 32, 64),
    "BitsStored": (0, 1, 7, 12, 16, 33),
    "HighBit": (0, 7, 15, 40),
    "SamplesPerPixel": (0, 1, 2, 3, 4, 65535),
    "PixelRepresentation": (0, 1, 2),
    "PhotometricInterpretation": ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422",
                                  "PALETTE COLOR", "", "XYZ"),
    "PlanarConfiguration": (0, 1, 7),
    "NumberOfFrames": (0, 1, 2, 1000, "abc"),
    "Rows": (0, 1, 7, 12, 65535),
    "Columns": (0, 1, 10, 65535),
    "WindowCenter": ("0", "-1e300", "nan", "40\\400", ""),
    "WindowWidth": ("0", "-5", "1e-300", "inf", "abc"),
    "RescaleSlope": ("0", "-1", "1e308", "nan", "x"),
    "RescaleIntercept": ("-1e308", "1024", "nan"),
}


# ============================================================================ the tests

def test_seeds_decode_to_rgb(worker: DecodeWorker, tally: Tally) -> None:
    """Every seed is a valid file: it must decode (this also sets the worker's memory baseline)."""
    since = len(tally.failures)
    bad = {}
    for name, data in seed_files().items():
        result = check(worker, tally, data, name)
        if result.outcome != "image":
            bad[name] = result.message
    assert_no_failures(tally, since)
    assert not bad, f"valid seed files did not decode: {bad}"


def test_bombs_and_zero_sizes_are_refused_fast(worker: DecodeWorker, tally: Tally) -> None:
    """Headers claiming zero or huge sizes end in a typed error, fast, at the fuzz limit and the default one."""
    from pipeline.preprocess import DEFAULT_MAX_PIXELS

    since = len(tally.failures)
    decoded = {}
    for name, data in bomb_files().items():
        for limit in (MAX_PIXELS, DEFAULT_MAX_PIXELS):
            result = check(worker, tally, data, name, limit)
            if result.outcome == "image":
                decoded[(name, limit)] = result.shape
    assert_no_failures(tally, since)
    too_big = {k: v for k, v in decoded.items() if v[0] * v[1] > k[1] or 0 in v[:2]}
    assert not too_big, f"images over the limit or of zero size were decoded: {too_big}"


def test_seeded_mutations(worker: DecodeWorker, tally: Tally) -> None:
    """FUZZ_EXAMPLES seeded mutations of the seed files (and some pure random byte strings)."""
    rng = random.Random(FUZZ_SEED)
    seeds = seed_files()
    names, blobs = list(seeds), list(seeds.values())
    since = len(tally.failures)
    outcomes = {"image": 0, "error": 0}
    for i in range(FUZZ_EXAMPLES):
        if i % 20 == 0:  # pure noise, sometimes named .dcm (which routes it to the DICOM reader)
            data = rng.randbytes(rng.randint(0, 2048))
            name = rng.choice(["", "noise.png", "noise.dcm"])
        else:
            k = rng.randrange(len(names))
            data, name = mutate(rng, blobs[k], blobs), names[k]
            if rng.random() < 0.1:
                name = ""  # content sniffing alone
        result = check(worker, tally, data, name)
        if result.outcome in outcomes:
            outcomes[result.outcome] += 1
    assert_no_failures(tally, since)
    assert outcomes["image"] > 0 and outcomes["error"] > 0, outcomes
    assert worker.peak_mb < RSS_GROWTH_LIMIT_MB, f"worker peak RSS grew by {worker.peak_mb:.0f} MB"


@pytest.mark.filterwarnings("ignore::UserWarning")
@HYP_SETTINGS
@given(height=st.integers(1, 48), width=st.integers(1, 48), channels=st.sampled_from([1, 2, 3, 4]),
       dtype=st.sampled_from(["uint8", "uint16", "float32", "bool"]),
       fmt=st.sampled_from([".png", ".tiff", ".bmp", ".jpg", ".webp", ".pgm", ".dcm"]),
       seed=st.integers(0, 2**16),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(1, 10**6)))
def test_hypothesis_images_of_any_shape_depth_and_damage(worker: DecodeWorker, tally: Tally, height: int,
                                                         width: int, channels: int, dtype: str, fmt: str,
                                                         seed: int, edits: list[tuple[int, int]],
                                                         cut: int | None) -> None:
    """Hypothesis: arrays of any small shape, channel count and depth, encoded, then maybe damaged."""
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype == "bool":
        array = rng.random(shape) > 0.5
    elif dtype == "float32":
        array = (rng.random(shape) * rng.choice([1.0, 1000.0, -3.0])).astype(np.float32)
    else:
        array = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    data = encode_any(array, fmt)
    if data is None:
        return  # this encoder cannot write that combination
    blob = bytearray(data)
    for offset, value in edits:
        blob[offset % len(blob)] = value
    if cut is not None:
        del blob[max(1, cut % len(blob)):]
    damaged = bool(edits) or cut is not None
    since = len(tally.failures)
    result = check(worker, tally, bytes(blob), "x" + fmt)
    assert_no_failures(tally, since)
    if not damaged and fmt in (".png", ".tiff"):
        assert result.outcome == "image" and result.shape == (height, width, 3), result


def encode_any(array: np.ndarray, fmt: str) -> bytes | None:
    """`array` as a file of format `fmt` via OpenCV (or pydicom for .dcm); None if unsupported."""
    if fmt == ".dcm":
        arr = array.astype(np.uint8) * 255 if array.dtype == np.bool_ else array
        if arr.dtype.kind == "f" or (arr.ndim == 3 and arr.shape[2] != 3):
            return None
        rows, cols = arr.shape[:2]
        return dicom_bytes(rows=rows, cols=cols, samples=3 if arr.ndim == 3 else 1, bits=arr.itemsize * 8,
                           pixels=np.ascontiguousarray(arr).tobytes(), explicit=True)
    arr = array.astype(np.uint8) * 255 if array.dtype == np.bool_ else array
    if fmt != ".tiff" and arr.dtype == np.float32:
        return None
    if fmt in (".bmp", ".jpg", ".webp", ".pgm") and arr.dtype != np.uint8 and not (fmt == ".pgm" and arr.dtype == np.uint16):
        return None
    if fmt == ".pgm" and arr.ndim == 3:
        return None
    try:
        ok, buf = cv2.imencode(fmt, arr)
    except cv2.error:
        return None
    return buf.tobytes() if ok else None


@HYP_SETTINGS
@given(fmt=st.sampled_from(["png", "png16", "tiff", "tiff_be", "bmp", "gif", "jpeg"]),
       width=st.one_of(st.integers(0, 4), st.integers(0, 2**32 - 1), st.sampled_from([65535, 2**31 - 1, 2**31])),
       height=st.one_of(st.integers(0, 4), st.integers(0, 2**32 - 1), st.sampled_from([65535, 2**31 - 1, 2**31])))
def test_hypothesis_claimed_dimensions(worker: DecodeWorker, tally: Tally, fmt: str, width: int, height: int) -> None:
    """Hypothesis: any claimed width x height in any header is refused or honoured, never trusted into a crash."""
    jpeg = pil_bytes(_gradient(), "JPEG")
    w16, h16 = min(width, 65535), min(height, 65535)
    data = {"png": lambda: png_header_only(width, height),
            "png16": lambda: png_header_only(width, height, depth=16, colour=6),
            "tiff": lambda: tiff_header_only(width, height),
            "tiff_be": lambda: tiff_header_only(width, height, bits=16, samples=3, photometric=2, big_endian=True),
            "bmp": lambda: bmp_header_only(struct.unpack("<i", struct.pack("<I", width))[0],
                                           struct.unpack("<i", struct.pack("<I", height))[0]),
            "gif": lambda: gif_header_only(w16, h16),
            "jpeg": lambda: jpeg_with_size(jpeg, w16, h16)}[fmt]()
    since = len(tally.failures)
    result = check(worker, tally, data, "")
    assert_no_failures(tally, since)
    if result.outcome == "image":
        assert 0 < result.shape[0] * result.shape[1] <= MAX_PIXELS


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the invalid values written on purpose
@HYP_SETTINGS
@given(changes=st.dictionaries(st.sampled_from(sorted(DICOM_ATTRIBUTES)), st.integers(0, 7), max_size=4),
       samples=st.sampled_from([1, 3]), bits=st.sampled_from([8, 16]), frames=st.sampled_from([1, 2]),
       cut=st.one_of(st.none(), st.integers(1, 4000)), drop_pixels=st.booleans())
def test_hypothesis_dicom_attributes(worker: DecodeWorker, tally: Tally, changes: dict[str, int], samples: int,
                                     bits: int, frames: int, cut: int | None, drop_pixels: bool) -> None:
    """Hypothesis: DICOM files whose image attributes contradict each other or the pixel data."""
    from pydicom import dcmread

    base = dicom_bytes(rows=9, cols=7, frames=frames, samples=samples, bits=bits, explicit=True)
    ds = dcmread(io.BytesIO(base))
    for key, pick in changes.items():
        options = DICOM_ATTRIBUTES[key]
        value = options[pick % len(options)]
        try:
            setattr(ds, key, value)
        except (ValueError, TypeError, OverflowError):
            continue
    if drop_pixels:
        del ds.PixelData
    buf = io.BytesIO()
    try:
        ds.save_as(buf)
    except Exception:  # noqa: BLE001 - pydicom refused to write this combination: nothing to decode
        return
    data = buf.getvalue()
    if cut is not None:
        data = data[:max(1, len(data) - cut)]
    since = len(tally.failures)
    check(worker, tally, data, "fuzz.dcm")
    check(worker, tally, data, "")  # the same bytes found by the DICM magic alone
    assert_no_failures(tally, since)


@HYP_SETTINGS
@given(body=st.binary(max_size=3000),
       magic=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM",
                              b"GIF87a", b"RIFF\x10\x00\x00\x00WEBPVP8 ", b"P6\n", b"\x00" * 128 + b"DICM"]),
       name=st.sampled_from(["", "upload.png", "upload.dcm"]))
def test_hypothesis_random_bytes(worker: DecodeWorker, tally: Tally, body: bytes, magic: bytes, name: str) -> None:
    """Hypothesis: random bytes, bare or behind a real format's magic number."""
    since = len(tally.failures)
    check(worker, tally, magic + body, name)
    assert_no_failures(tally, since)


def test_watchdog_catches_hangs_and_crashes() -> None:
    """The watchdog itself: a hung or dead worker is reported and replaced, not waited on forever."""
    w = DecodeWorker(wall_limit=3.0)
    try:
        assert w.decode(seed_files()["gray.png"], "gray.png").outcome == "image"
        w.proc.send_signal(signal.SIGSTOP)  # the next input hangs
        start = time.perf_counter()
        hung = w.decode(b"\x89PNG", "x.png")
        assert hung.outcome == "hang" and time.perf_counter() - start < 30
        os.kill(w.proc.pid, signal.SIGKILL)
        crashed = w.decode(b"\x89PNG", "x.png")
        assert crashed.outcome == "crash"
        assert w.decode(seed_files()["gray.png"], "gray.png").outcome == "image" and w.restarts == 2
    finally:
        w.close()


# ---------------------------------------------------------------- memory at the default limit

def test_largest_allowed_upload_stays_within_memory_bound(worker: DecodeWorker) -> None:
    """A 16-bit RGBA PNG just under the default pixel limit (a few hundred kB of zeros) must not need gigabytes."""
    from pipeline.preprocess import DEFAULT_MAX_PIXELS

    side = int((DEFAULT_MAX_PIXELS * 0.3) ** 0.5)  # 15 MP: decoded as uint16 RGBA that is 120 MB
    arr = np.zeros((side, side, 4), np.uint16)
    arr[..., 3] = 40000  # translucent: the alpha compositing path
    arr[0, 0, 0] = 7
    data = cv2_bytes(arr, ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9])
    del arr
    fresh = DecodeWorker()
    try:
        fresh.decode(seed_files()["gray.png"], "gray.png")  # baseline after imports
        result = fresh.decode(data, "big.png", DEFAULT_MAX_PIXELS)
        assert result.outcome == "image", result
        growth = fresh.peak_mb
    finally:
        fresh.close()
    megapixels = side * side / 1e6
    # OpenCV's uint16 RGBA is 8 bytes a pixel, its RGB(A) reorder 8 more, the result 3: 16 B/px is the bound
    # (whole-image float compositing used ~37 B/px: 1.8 GB for a 400 kB upload at 49 MP)
    print(f"\n[fuzz] {megapixels:.0f} MP 16-bit RGBA upload: peak RSS growth {growth:.0f} MB, {result.cpu:.2f} s CPU")
    assert growth < 16 * megapixels, f"{growth:.0f} MB peak growth for a {megapixels:.0f} MP upload"


# ---------------------------------------------------------------- the corpus of failing inputs

def corpus_files() -> list[Path]:
    """Every input kept in tests/fuzz_corpus/ (the .txt files next to them say why they were kept)."""
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix not in (".txt", ".md"))


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_replays(worker: DecodeWorker, tally: Tally, path: Path) -> None:
    """Regression: every input that once broke the contract (or is kept as a hostile example) now keeps it."""
    data = path.read_bytes()
    if worker.baseline_mb is None:  # measure memory growth from a warmed-up worker, not from this input
        worker.decode(seed_files()["gray.png"], "gray.png")
    for name in (path.name, ""):
        result = worker.decode(data, name)
        tally.add(result)
        reason = failure_reason(result, data)
        assert reason is None, f"{path.name} (as {name!r}): {reason}"


# ---------------------------------------------------------------- optional atheris (libFuzzer) harness

ATHERIS_HARNESS = textwrap.dedent(r"""
    import sys, warnings
    import atheris
    sys.path.insert(0, sys.argv.pop(1))
    warnings.simplefilter("ignore")
    import cv2, numpy, pydicom  # noqa: E401,F401 - compiled or big: imported uninstrumented (start-up time)
    with atheris.instrument_imports():  # coverage guidance from our decoder and Pillow's Python plugins
        from pipeline.preprocess import ImageDecodeError, decode_image

    NAMES = ("", "upload.png", "upload.dcm")

    def one_input(data: bytes) -> None:
        if not data:
            return
        name = NAMES[data[0] % len(NAMES)]
        try:
            decoded = decode_image(data[1:], name, max_pixels=4_000_000)
        except ImageDecodeError as exc:
            assert str(exc) and "\n" not in str(exc), repr(str(exc))
            return
        rgb = decoded.rgb
        assert rgb.dtype.name == "uint8" and rgb.ndim == 3 and rgb.shape[2] == 3, (rgb.dtype, rgb.shape)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
""")


def test_atheris_harness(tmp_path: Path) -> None:
    """libFuzzer-guided fuzzing via atheris when it is installed (skipped otherwise); crashes go to the corpus."""
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris to run this harness)")
    runs = int(os.environ.get("FUZZ_ATHERIS_RUNS", "1000"))
    seeds_dir = tmp_path / "seeds"
    seeds_dir.mkdir()
    for i, (name, data) in enumerate(seed_files().items()):
        prefix = b"\x02" if name.endswith(".dcm") else b"\x00"
        (seeds_dir / f"seed{i}").write_bytes(prefix + data)
    harness = tmp_path / "harness.py"
    harness.write_text(ATHERIS_HARNESS, encoding="utf-8")
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    cmd = [sys.executable, str(harness), str(REPO_ROOT), f"-atheris_runs={runs}", "-max_len=16384",
           f"-timeout={int(CPU_LIMIT_S * 5)}", "-rss_limit_mb=3072", "-seed=1", f"-artifact_prefix={crashes}/",
           str(seeds_dir)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    found = sorted(crashes.iterdir())
    for path in found:
        data = path.read_bytes()
        name = ("", "upload.png", "upload.dcm")[data[0] % 3] if data else ""
        save_to_corpus(data[1:], name or "atheris.bin", f"atheris {path.name.split('-')[0]}")
    assert proc.returncode == 0 and not found, (f"atheris found {len(found)} failing inputs "
                                                f"(saved to tests/fuzz_corpus/):\n{proc.stderr[-3000:]}")
    executed = [line for line in proc.stderr.splitlines() if line.startswith("Done ")]
    print(f"\n[fuzz] atheris: {executed[-1] if executed else proc.stderr[-300:]}")

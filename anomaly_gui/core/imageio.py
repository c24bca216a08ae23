"""Read every image we meet (8/16-bit, gray/RGB/RGBA, PNG/JPEG/TIFF/BMP, EXIF orientation) and write atomically."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from anomaly_gui.core.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as HxW (gray) or HxWxC (RGB/RGBA, channels in RGB order), keeping its bit depth.

    Raises DataError naming the file when it is missing, empty, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            arr = _read_tiff(path)
        else:
            arr = _read_pillow(path)
    except DataError:
        raise
    except Exception as exc:  # any decoder failure becomes one clear message
        raise DataError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise DataError(path, f"unsupported image shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()  # forces decoding so truncated files fail here
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
            return np.asarray(im, dtype=np.uint16)
        if mode == "I":
            arr = np.asarray(im)
            return arr.astype(np.uint16) if arr.max(initial=0) < 65536 else arr.astype(np.float32)
        if mode == "F":
            return np.asarray(im, dtype=np.float32)
        if mode in ("1", "L"):
            return np.asarray(im.convert("L"))
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
            return np.asarray(im.convert("RGBA"))
        return np.asarray(im.convert("RGB"))


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        arr = tifffile.imread(path)
    except Exception:
        return _read_pillow(path)  # some TIFF flavours (old JPEG-in-TIFF) only Pillow reads
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar configuration
    if arr.ndim > 3:
        arr = arr.reshape(arr.shape[-3:]) if arr.shape[-1] in (1, 3, 4) else arr[0]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    return arr


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Scale any bit depth to uint8 (16-bit and float by their actual range)."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        hi = float(img.max(initial=0))
        if hi <= 255:
            return img.astype(np.uint8)
        return (img.astype(np.float32) * (255.0 / 65535.0 if hi > 4095 else 255.0 / 4095.0)).clip(0, 255).astype(np.uint8)
    f = img.astype(np.float32)
    lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
    if hi - lo < 1e-12:
        return np.zeros(img.shape, np.uint8)
    return ((f - lo) * (255.0 / (hi - lo))).clip(0, 255).astype(np.uint8)


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Any image to HxWx3 uint8 RGB (alpha dropped, gray replicated)."""
    img = to_uint8(img)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3])
    if img.shape[2] == 2:
        return np.repeat(img[:, :, :1], 3, axis=2)
    return img


def to_gray8(img: np.ndarray) -> np.ndarray:
    """Any image to HxW uint8 (luma for colour)."""
    img = to_uint8(img)
    if img.ndim == 2:
        return img
    rgb = img[:, :, :3].astype(np.float32)
    return (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).clip(0, 255).astype(np.uint8)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) without decoding the pixels, EXIF rotation honoured."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = _header_orientation(im)
    except Exception as exc:
        raise DataError(path, f"cannot read image header ({exc})") from exc
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _header_orientation(im: "Image.Image") -> int:
    """EXIF orientation without decoding pixels (Pillow's PNG getexif() would decode the whole image)."""
    from PIL import Image

    if im.format == "PNG":
        raw = im.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(0x0112, 1) or 1)
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except (SyntaxError, ValueError, TypeError, OSError):
        return 1  # a damaged EXIF block does not make the image unreadable


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` at once, on error it is removed.

    A half-written file therefore never replaces a good one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_image(path: str | Path, img: np.ndarray) -> Path:
    """Write an image atomically; the format follows the suffix (PNG keeps 16-bit)."""
    from PIL import Image

    path = Path(path)
    arr = np.ascontiguousarray(img)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    with atomic_path(path) as tmp:
        if arr.dtype == np.uint16 and arr.ndim == 2:
            Image.fromarray(arr, mode="I;16").save(tmp, format=_pil_format(path))
        else:
            Image.fromarray(to_uint8(arr)).save(tmp, format=_pil_format(path))
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _pil_format(path: Path) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}.get(path.suffix.lower(), "PNG")

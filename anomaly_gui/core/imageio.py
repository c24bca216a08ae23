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


# Analysts open large scenes (SAR, orthophotos) on their own machine: allow up to 1 gigapixel
# instead of Pillow's web-server default (about 179 megapixels, an error past it).
MAX_PIXELS = 1_000_000_000


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_PIXELS)
    with Image.open(path) as im:
        if im.format == "PNG" and _png_is_16bit_colour(path):
            orientation = _header_orientation(im)
            return _apply_orientation(_read_cv2_unchanged(path), orientation)
        im.load()  # forces decoding so truncated files fail here
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
            return np.asarray(im, dtype=np.uint16)
        if mode == "I":
            arr = np.asarray(im)
            return arr.astype(np.uint16) if 0 <= arr.min(initial=0) and arr.max(initial=0) < 65536 else arr.astype(np.float32)
        if mode == "F":
            return np.asarray(im, dtype=np.float32)
        if mode in ("1", "L"):
            return np.asarray(im.convert("L"))
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
            return np.asarray(im.convert("RGBA"))
        return np.asarray(im.convert("RGB"))


def _png_is_16bit_colour(path: Path) -> bool:
    """True for 48/64-bit PNGs (Pillow would cut them to 8 bits per channel)."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    return len(head) == 26 and head[24] == 16 and head[25] in (2, 6)  # IHDR bit depth, colour type RGB/RGBA


def _read_cv2_unchanged(path: Path) -> np.ndarray:
    import cv2

    arr = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DataError(path, "cannot decode image (damaged or truncated)")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return arr


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an HxW[xC] array."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1), 8: lambda a: np.rot90(a, 1)}
    fn = ops.get(orientation)
    return np.ascontiguousarray(fn(arr)) if fn else arr


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]  # the first page/image of a multi-page file
            arr = page.asarray()
            axes = getattr(page, "axes", "")
            orientation = _tiff_orientation(page)
    except Exception:
        return _read_pillow(path)  # some TIFF flavours (old JPEG-in-TIFF) only Pillow reads
    if axes.startswith("S") and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)  # planar configuration
    elif arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim > 3:
        arr = arr.reshape(arr.shape[-3:]) if arr.shape[-1] in (1, 3, 4) else arr[0]
    if arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4):
        arr = arr[:, :, 0]  # multispectral: show the first band
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.iscomplexobj(arr):
        arr = np.abs(arr).astype(np.float32)  # SAR single-look complex: amplitude
    elif arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return _apply_orientation(arr, orientation)


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
    finite = np.isfinite(f)
    if not finite.any():
        return np.zeros(img.shape, np.uint8)
    lo, hi = float(f[finite].min()), float(f[finite].max())
    f = np.where(finite, f, lo)
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
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    if path.suffix.lower() in (".tif", ".tiff"):
        try:  # the header as read_image reads the pixels (tifffile): recent Pillow rotates TIFFs itself
            return _tiff_size(path, None)
        except DataError:
            pass
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_PIXELS)
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = _header_orientation(im)
    except Exception as exc:
        if path.suffix.lower() in (".tif", ".tiff"):
            return _tiff_size(path, exc)  # BigTIFF and other flavours Pillow does not open
        raise DataError(path, f"cannot read image header ({exc})") from exc
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _tiff_size(path: Path, first_error: Exception | None) -> tuple[int, int]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            shape, axes = page.shape, getattr(page, "axes", "")
            orientation = _tiff_orientation(page)
    except Exception as exc:
        raise DataError(path, f"cannot read image header ({first_error}; {exc})") from exc
    if axes and "Y" in axes and "X" in axes:
        w, h = int(shape[axes.index("X")]), int(shape[axes.index("Y")])
    else:
        w, h = (int(shape[1]), int(shape[0])) if len(shape) >= 2 else (int(shape[0]), 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _tiff_orientation(page: object) -> int:
    """The TIFF/EXIF Orientation tag (274) of a tifffile page: in IFD0, or in its EXIF IFD; 1 when absent."""
    tags = getattr(page, "tags", None)
    try:
        tag = tags.get(274) if tags is not None else None  # type: ignore[union-attr]
        if tag is not None:
            return int(tag.value)
        exif = tags.get(34665) if tags is not None else None  # type: ignore[union-attr]
        value = exif.value.get("Orientation") if exif is not None and isinstance(exif.value, dict) else None
        return int(value) if value else 1
    except (TypeError, ValueError, AttributeError):
        return 1  # a damaged tag does not make the image unreadable


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
    """Write an image atomically; the format follows the suffix.

    PNG keeps 16 bits (gray and colour), TIFF keeps 16 bits and float32; other cases are written
    as 8 bits (JPEG/BMP drop an alpha channel). Bool arrays become 0/255.
    """
    from PIL import Image

    path = Path(path)
    arr = np.ascontiguousarray(img)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    fmt = _pil_format(path)
    with atomic_path(path) as tmp:
        if fmt == "TIFF" and arr.dtype in (np.uint16, np.float32):
            import tifffile

            tifffile.imwrite(tmp, arr, photometric="rgb" if arr.ndim == 3 and arr.shape[2] in (3, 4) else "minisblack")
        elif fmt == "PNG" and arr.dtype == np.uint16:
            import cv2

            bgr = arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)
            ok, buf = cv2.imencode(".png", bgr)
            if not ok:
                raise DataError(path, "cannot encode 16-bit PNG")
            tmp.write_bytes(buf.tobytes())
        else:
            arr8 = to_uint8(arr)
            if fmt in ("JPEG", "BMP") and arr8.ndim == 3 and arr8.shape[2] == 4:
                arr8 = arr8[:, :, :3]
            Image.fromarray(arr8).save(tmp, format=fmt)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _pil_format(path: Path) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}.get(path.suffix.lower(), "PNG")

"""core/imageio: bit depths, channel layouts, file formats, EXIF orientation, damaged files, atomic writes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.imageio import (_apply_orientation, atomic_path, image_size, read_image, to_gray8, to_rgb8, to_uint8,
                                      write_image, write_text)

RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (30, 40), dtype=np.uint16)
RGB16 = RNG.integers(0, 65536, (30, 40, 3), dtype=np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_lossless_formats_round_trip_gray_rgb_rgba(tmp_path, suffix):
    gray = RGB8[:, :, 0]
    rgba = np.dstack([RGB8, RNG.integers(0, 256, (30, 40), dtype=np.uint8)])
    cases = [gray, RGB8] + ([rgba] if suffix != ".bmp" else [])
    for k, arr in enumerate(cases):
        p = tmp_path / f"img{k}{suffix}"
        Image.fromarray(arr).save(p)
        out = read_image(p)
        assert out.dtype == np.uint8 and out.shape == arr.shape
        assert np.array_equal(out, arr)


def test_jpeg_gray_and_rgb(tmp_path):
    yy, xx = np.mgrid[0:30, 0:40]
    smooth = np.dstack([xx * 6, yy * 8, (xx + yy) * 3]).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "c.jpg", quality=95)
    Image.fromarray(smooth[:, :, 1]).save(tmp_path / "g.jpg", quality=95)
    c, g = read_image(tmp_path / "c.jpg"), read_image(tmp_path / "g.jpg")
    assert c.shape == (30, 40, 3) and g.shape == (30, 40) and c.dtype == np.uint8
    assert np.abs(c.astype(int) - smooth).mean() < 4  # lossy, but the same picture in RGB order
    assert np.abs(g.astype(int) - smooth[:, :, 1]).mean() < 4


def test_16bit_png_gray_and_colour_keep_their_depth(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "g16.png"), GRAY16)
    cv2.imwrite(str(tmp_path / "c16.png"), RGB16[:, :, ::-1])  # OpenCV writes BGR
    g, c = read_image(tmp_path / "g16.png"), read_image(tmp_path / "c16.png")
    assert g.dtype == np.uint16 and np.array_equal(g, GRAY16)
    assert c.dtype == np.uint16 and np.array_equal(c, RGB16)  # Pillow alone would cut this to 8 bits


def test_16bit_tiff_planar_multipage_and_float(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "c16.tif", RGB16)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(RGB16, -1, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "pages.tif", np.stack([GRAY16, GRAY16 // 2]))
    tifffile.imwrite(tmp_path / "f32.tif", GRAY16.astype(np.float32) / 7)
    assert np.array_equal(read_image(tmp_path / "c16.tif"), RGB16)
    assert np.array_equal(read_image(tmp_path / "planar.tif"), RGB16)
    assert np.array_equal(read_image(tmp_path / "pages.tif"), GRAY16)  # first page, not a 2-channel image
    f = read_image(tmp_path / "f32.tif")
    assert f.dtype == np.float32 and f.shape == (30, 40)


def test_tiff_flavours_pillow_cannot_open(tmp_path):
    """SAR and multispectral TIFFs (float64, complex SLC, 5 bands) still give a size and pixels."""
    import tifffile

    tifffile.imwrite(tmp_path / "f64.tif", GRAY16.astype(np.float64))
    tifffile.imwrite(tmp_path / "slc.tif", (GRAY16 + 1j * GRAY16).astype(np.complex64))
    tifffile.imwrite(tmp_path / "ms.tif", np.dstack([GRAY16] * 5), photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(tmp_path / "big.tif", GRAY16, bigtiff=True)
    for name in ("f64.tif", "slc.tif", "ms.tif", "big.tif"):
        assert image_size(tmp_path / name) == (40, 30), name
    f = read_image(tmp_path / "f64.tif")
    assert f.dtype == np.float32 and np.array_equal(f, GRAY16.astype(np.float32))
    slc = read_image(tmp_path / "slc.tif")
    assert slc.dtype == np.float32 and np.allclose(slc, np.abs(GRAY16 + 1j * GRAY16.astype(np.float64)), rtol=1e-5)
    assert np.array_equal(read_image(tmp_path / "ms.tif"), GRAY16)  # first band
    assert np.array_equal(read_image(tmp_path / "big.tif"), GRAY16)


def test_write_round_trip_keeps_depth(tmp_path):
    for name, arr in (("g16.png", GRAY16), ("c16.png", RGB16), ("c16.tif", RGB16), ("g8.bmp", RGB8[:, :, 0]),
                      ("f.tif", GRAY16.astype(np.float32) / 3)):
        write_image(tmp_path / name, arr)
        back = read_image(tmp_path / name)
        assert back.dtype == arr.dtype and np.array_equal(back, arr), name
    write_image(tmp_path / "rgba.jpg", np.dstack([RGB8, RGB8[:, :, 0]]))  # JPEG has no alpha: dropped, not an error
    assert read_image(tmp_path / "rgba.jpg").shape == (30, 40, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    arr = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.jpg", exif=exif, quality=100)
    im.save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as ref_im:
        ref = np.asarray(ImageOps.exif_transpose(ref_im))
    assert np.array_equal(_apply_orientation(arr, orientation), ref)
    assert np.array_equal(read_image(tmp_path / "o.png"), ref)
    rotated = orientation in (5, 6, 7, 8)
    assert read_image(tmp_path / "o.jpg").shape[:2] == ((9, 6) if rotated else (6, 9))
    assert image_size(tmp_path / "o.jpg") == ((6, 9) if rotated else (9, 6))  # (width, height)


def test_image_size_reads_only_the_header(tmp_path, monkeypatch):
    Image.fromarray(RGB8).save(tmp_path / "a.png")
    monkeypatch.setattr(Image.Image, "load", lambda self: (_ for _ in ()).throw(AssertionError("decoded")))
    assert image_size(tmp_path / "a.png") == (40, 30)


def _damaged(tmp_path):
    Image.fromarray(RGB8).save(tmp_path / "good.png")
    Image.fromarray(RGB8).save(tmp_path / "good.jpg")
    import tifffile

    tifffile.imwrite(tmp_path / "good.tif", RGB16)
    out = {}
    for name in ("good.png", "good.jpg", "good.tif"):
        data = (tmp_path / name).read_bytes()
        out[f"truncated {name[-3:]}"] = tmp_path / f"trunc_{name}"
        out[f"truncated {name[-3:]}"].write_bytes(data[: len(data) // 2])
    out["empty"] = tmp_path / "empty.png"
    out["empty"].write_bytes(b"")
    out["garbage"] = tmp_path / "garbage.jpg"
    out["garbage"].write_bytes(b"this is not an image " * 20)
    out["missing"] = tmp_path / "missing.png"
    return out


def test_damaged_files_raise_data_error_naming_the_file(tmp_path):
    for what, path in _damaged(tmp_path).items():
        with pytest.raises(DataError) as info:
            read_image(path)
        assert info.value.path == path, what
        assert path.name in str(info.value), what


def test_image_size_errors_name_the_file(tmp_path):
    files = _damaged(tmp_path)
    for what in ("empty", "garbage", "missing"):
        with pytest.raises(DataError, match=files[what].name):
            image_size(files[what])


def test_conversions():
    assert to_uint8(np.array([[0, 65535]], np.uint16)).tolist() == [[0, 255]]
    assert to_uint8(np.array([[0, 4095]], np.uint16)).tolist() == [[0, 255]]  # 12-bit sensors
    f = np.array([[np.nan, 1.0, 3.0]], np.float32)
    assert to_uint8(f).tolist() == [[0, 0, 255]]
    assert to_rgb8(RGB8[:, :, 0]).shape == (30, 40, 3)
    assert to_rgb8(np.dstack([RGB8, RGB8[:, :, :1]])).shape == (30, 40, 3)
    gray = to_gray8(RGB8)
    assert gray.shape == (30, 40) and gray.dtype == np.uint8


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "labels.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.txt"]  # no temporary left behind
    write_text(target, "new")
    assert target.read_text() == "new"


@pytest.mark.parametrize("orientation, shape, corner", [(1, (20, 40), (0, 0)), (3, (20, 40), (19, 39)),
                                                         (6, (40, 20), (0, 19)), (8, (40, 20), (39, 0))])
def test_tiff_orientation_tag_is_applied(tmp_path, orientation, shape, corner):
    """A TIFF's Orientation tag (274), read through tifffile, turns the pixels and the size as EXIF does."""
    import tifffile

    from anomaly_gui.core.imageio import image_size, read_image

    arr = np.zeros((20, 40, 3), np.uint8)
    arr[0, 0] = (255, 0, 0)  # the stored top-left pixel
    path = tmp_path / f"o{orientation}.tif"
    tifffile.imwrite(path, arr, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    img = read_image(path)
    assert img.shape[:2] == shape and image_size(path) == (shape[1], shape[0])
    assert tuple(np.argwhere(img[..., 0] == 255)[0]) == corner

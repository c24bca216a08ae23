"""Tiled inference: grid coverage, windowed reading, duplicates across tile borders merged, progress."""
from __future__ import annotations

import numpy as np
import pytest

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.core.tiling import Scene, synthetic_scene, tile_grid, tiled_detect
from anomaly_gui.engines.base import Cancelled, RunContext


def test_grid_covers_scene_with_overlap():
    tiles = tile_grid(1000, 700, tile=400, overlap=100)
    cover = np.zeros((700, 1000), bool)
    for t in tiles:
        assert t.shape == (400, 400)
        cover[t.y0:t.y1, t.x0:t.x1] = True
    assert cover.all()
    assert tile_grid(300, 200, 400, 100) == [tile_grid(300, 200, 400, 100)[0]]  # small scene: one tile
    with pytest.raises(ValueError):
        tile_grid(100, 100, 50, 50)


def _threshold_detector(img: np.ndarray) -> list[Annotation]:
    """A real (if simple) detector: connected bright components, clipped by the tile like a CNN's boxes."""
    import cv2

    mask = (img > 128).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        out.append(Annotation("box", "ship", {"x1": x, "y1": y, "x2": x + w, "y2": y + h}, score=min(1.0, area / 400), source="model"))
    return out


def test_objects_on_tile_borders_are_found_once(tmp_path):
    scene = np.zeros((1000, 1000), np.uint8)
    ships = [(380, 100, 440, 130), (100, 370, 130, 420), (350, 350, 420, 420), (700, 720, 730, 750)]
    for x1, y1, x2, y2 in ships:
        scene[y1:y2, x1:x2] = 255
    path = tmp_path / "scene.npy"
    np.save(path, scene)
    calls = []
    ctx = RunContext(progress=lambda d, t, m: calls.append((d, t)))
    sc = Scene(path)
    assert sc.memory_mapped
    found = tiled_detect(sc, _threshold_detector, tile=400, overlap=100, ctx=ctx)
    boxes = sorted(tuple(round(v) for v in a.box()) for a in found)
    assert boxes == sorted(ships)  # each ship once, with its full extent (not the half seen by a tile)
    assert calls[-1][0] == calls[-1][1] == len(tile_grid(1000, 1000, 400, 100))


def test_cancel_between_tiles_and_bad_file(tmp_path):
    with pytest.raises(Cancelled):
        tiled_detect(np.zeros((900, 900), np.uint8), _threshold_detector, tile=300, overlap=50,
                     ctx=RunContext(is_cancelled=lambda: True))
    with pytest.raises(DataError, match="not found"):
        Scene(tmp_path / "missing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match="bad.tif"):
        Scene(bad)


def test_synthetic_tiff_scene_is_memory_mapped(tmp_path):
    path = tmp_path / "big.tif"
    truth = synthetic_scene(path, size=2000, n_ships=15, ship=10)
    sc = Scene(path)
    assert sc.memory_mapped and (sc.width, sc.height) == (2000, 2000)
    from anomaly_gui.core.sar import stretch_percentile

    found = tiled_detect(sc, _threshold_detector, tile=512, overlap=64,
                         prepare=lambda a: stretch_percentile(a, limits=(0, 60000)))
    big = [a for a in found if (a.box()[2] - a.box()[0]) >= 8]
    # overlapping ships merge into one component; every true ship is covered by a detection
    for x1, y1, x2, y2 in truth:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        assert any(b.box()[0] <= cx <= b.box()[2] and b.box()[1] <= cy <= b.box()[3] for b in big)

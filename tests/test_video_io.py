"""Frame sources, UCSD layout, frame ranges, truncated videos and the prefetch cache."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.video_io import (
    FrameFolderSource,
    VideoFileSource,
    clips_from_items,
    frame_labels,
    open_source,
    read_frame_ranges,
    scan_ucsd,
)
from tests.conftest import shared_dataset


def write_avi(path: Path, n: int = 20, size: tuple[int, int] = (64, 48)) -> Path:
    """A small MJPG AVI whose frame i has mean grey level ~ 6 * i (mod 256)."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), (6 * i) % 256, np.uint8))
    w.release()
    return path


def test_video_file_random_and_sequential_access_agree(tmp_path):
    src = VideoFileSource(write_avi(tmp_path / "a.avi"))
    assert len(src) == 20 and src.size == (64, 48) and src.fps == pytest.approx(10)
    seq = {i: f.mean() for i, f in src.iter_frames()}
    assert len(seq) == 20
    for i in (19, 3, 0, 11, 12):  # backwards, forwards, seeks and steps
        assert src.read(i).mean() == pytest.approx(seq[i], abs=1.0)
    assert seq[19] > seq[0] + 100
    with pytest.raises(IndexError):
        src.read(20)
    assert src.problems == []


def test_truncated_video_keeps_frames_and_says_where_it_broke(tmp_path):
    good = write_avi(tmp_path / "good.avi", n=40)
    data = good.read_bytes()
    bad = tmp_path / "cut.avi"
    bad.write_bytes(data[: int(len(data) * 0.7)])
    src = open_source(bad)
    frames = [f for _, f in src.iter_frames()]
    assert 0 < len(frames) < 40
    assert len(src) == len(frames)
    assert len(src.problems) == 1
    msg = str(src.problems[0])
    assert "cut.avi" in msg and f"frame {len(frames)} of 40" in msg
    assert frames[-1].mean() == pytest.approx((6 * (len(frames) - 1)) % 256, abs=2.0)  # the kept frames are the right ones


def test_unreadable_and_missing_videos_name_the_file(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataError, match="junk.mp4"):
        open_source(junk)
    with pytest.raises(DataError, match="missing.avi"):
        open_source(tmp_path / "missing.avi")
    with pytest.raises(DataError, match="empty.avi"):
        (tmp_path / "empty.avi").write_bytes(b"")
        open_source(tmp_path / "empty.avi")


def test_frame_ranges_parse_and_reject_bad_files(tmp_path):
    p = tmp_path / "frame_gt.json"
    p.write_text(json.dumps({"anomalous_frames": {"Test001": [[3, 5], [9, 9]]}}))
    ranges = read_frame_ranges(p)
    assert ranges == {"Test001": [(3, 5), (9, 9)]}
    y = frame_labels(ranges["Test001"], 10)
    assert np.flatnonzero(y).tolist() == [2, 3, 4, 8]  # 1-based inclusive -> 0-based
    p.write_text("{broken")
    with pytest.raises(DataError, match="frame_gt.json"):
        read_frame_ranges(p)
    p.write_text(json.dumps({"Test001": [[5, 3]]}))
    with pytest.raises(DataError, match="bad range"):
        read_frame_ranges(p)


def test_ucsd_layout_on_real_ped2():
    root = shared_dataset("ucsd_ped2")
    test = scan_ucsd(root, "test")
    clips = clips_from_items(test)
    assert [c.name for c in clips] == ["Test001", "Test002", "Test003"]
    c1 = clips[0]
    assert len(c1) == 180 and c1.labels is not None
    assert not c1.labels[59] and c1.labels[60] and c1.labels[179]  # frame_gt: Test001 [61, 180]
    assert c1.mask_paths[0] is not None and c1.mask_paths[0].endswith("Test001_gt/001.png")
    assert c1.source.read(0).shape == (240, 360, 3)
    train = scan_ucsd(root, "train")
    assert len(train) == 420 and all(it.is_anomalous is None for it in train)


def test_clips_group_frames_by_clip_in_frame_order(tmp_path):
    from anomaly_gui.core.imageio import write_image

    items = []
    for clip in ("A", "B"):
        for i in (2, 0, 1):  # given out of order
            p = write_image(tmp_path / clip / f"{i:03d}.png", np.full((8, 8), 50 * i + (100 if clip == "B" else 0), np.uint8))
            items.append(DatasetItem(path=str(p), kind="frame", group=clip, frame_index=i, is_anomalous=i == 2))
    items.append(DatasetItem(path=str(write_avi(tmp_path / "v.avi", n=5)), kind="video"))
    clips = clips_from_items(items)
    assert [c.name for c in clips] == ["A", "B", "v"]
    assert [it.frame_index for it in clips[0].items] == [0, 1, 2]
    assert clips[0].labels.tolist() == [False, False, True]
    assert clips[1].source.read(1)[0, 0, 0] == 150
    assert isinstance(clips[2].source, VideoFileSource) and len(clips[2]) == 5
    with pytest.raises(DataError, match="no image frames"):
        (tmp_path / "empty").mkdir()
        FrameFolderSource.from_folder(tmp_path / "empty")


def test_prefetch_cache_fills_ahead_and_returns_the_same_frames(tmp_path):
    from anomaly_gui.gui.video_cache import FrameCache

    src = VideoFileSource(write_avi(tmp_path / "a.avi", n=30))
    direct = [VideoFileSource(src.path).read(i).copy() for i in range(30)]
    cache = FrameCache(src, capacity=64, ahead=10)
    try:
        cache.get(0)
        assert cache.wait_ready(9)  # filled by the thread, not by get()
        for i in range(30):
            assert np.array_equal(cache.get(i), direct[i])
        assert cache.hits > 0
    finally:
        cache.close()

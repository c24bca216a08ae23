"""Video benchmark on UCSD Ped2 (../shared/data/ucsd_ped2): per engine, training time, frames/s scoring,
frame-level AUC and pixel figures; and player playback fps with overlays on 360x240 frames. Prints one JSON.

    python benchmarks/bench_video.py [--engines future_frame,frame_ae,stacked_ae,convlstm_ae] [--epochs N] [--device cpu|cuda]
                                     [--param KEY=VALUE ...] [--playback-only] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALY_GUI_DATA", REPO.parent / "shared" / "data")) / "ucsd_ped2"


def rescore(path: Path, device: str, extra: dict) -> dict:
    """A saved model with other scoring parameters: recalibrated on the training clips, no training again."""
    import dataclasses

    from anomaly_gui.engines.base import Engine
    from anomaly_gui.evaluation.video import measure, read_split

    eng = Engine.load(path, device=device)
    scoring = {k: v for k, v in extra.items() if k not in ("epochs", "width", "height", "window", "seed", "lr", "batch_size")}
    eng.params = dataclasses.replace(eng.params, **scoring)
    t0 = time.perf_counter()
    eng.calibrate(read_split(DATA, "train"))
    out = measure(eng, read_split(DATA, "test"))
    out["calibrate_seconds"] = round(time.perf_counter() - t0, 1)
    out["model"] = str(path)
    return out


def bench_engine(name: str, epochs: int, device: str, extra: dict, save_dir: Path | None = None) -> dict:
    from anomaly_gui.evaluation.video import evaluate_video

    params = {"epochs": epochs, **extra}
    save = save_dir / f"{name}.agm" if save_dir else None
    out = evaluate_video(DATA, name, device=device, params=params, save_model=save)
    out["train_frames_per_second"] = round(out["n_train"] * epochs / max(out["fit_seconds"], 1e-9), 2)
    return out


def bench_playback(seconds: float = 4.0) -> dict:
    """Frames shown per second by the player, with the overlay (contours + region boxes) on every frame."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from anomaly_gui.core.video_io import clips_from_items, scan_ucsd
    from anomaly_gui.gui.state import AppState
    from anomaly_gui.gui.video_player_panel import VideoPlayerPanel

    app = QApplication.instance() or QApplication([])
    panel = VideoPlayerPanel(AppState(), None)
    panel.resize(900, 620)
    panel.show()
    clip = clips_from_items(scan_ucsd(DATA, "test"))[0]
    panel.load_clip(clip)
    n = len(clip)
    rng = np.random.default_rng(0)
    maps = rng.random((n, 128, 192)).astype(np.float32)
    maps[:, 40:70, 60:100] += np.linspace(0, 3, n)[:, None, None]  # a region that grows over the clip
    panel.set_results(np.linspace(0, 1, n), maps, threshold=0.3, pixel_threshold=2.0)
    # 1) stepping through every frame as fast as possible (cold cache: decoding included)
    t0 = time.perf_counter()
    for i in range(n):
        panel.show_frame(i)
        app.processEvents()
    step_fps = n / (time.perf_counter() - t0)
    # 2) timer-driven playback asking for 8x of 10 fps (80 fps): what the player really delivers
    panel.speed.setCurrentIndex(panel.speed.findData(8.0))
    panel.seek(0)
    panel.play()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds and panel.playing:
        app.processEvents()
        time.sleep(0.001)
    play_fps = panel.playback_fps()
    panel.pause()
    hits, misses = panel.cache.hits, panel.cache.misses
    panel.close_clip()
    return {"playback_step_fps": round(step_fps, 1), "playback_timer_fps": round(play_fps, 1),
            "playback_requested_fps": 80.0, "frame_size": "360x240", "overlay": "contours+boxes",
            "cache_hits": hits, "cache_misses": misses}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="future_frame,frame_ae,stacked_ae,convlstm_ae")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--playback-only", action="store_true")
    ap.add_argument("--save-dir", type=Path, default=None, help="keep the trained models here")
    ap.add_argument("--rescore", type=Path, default=None, metavar="MODEL.agm",
                    help="no training: score with this saved model and the given --param scoring settings")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if not DATA.is_dir():
        print(json.dumps({"skipped": f"no Ped2 data at {DATA}"}))
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    extra = {}
    for pair in args.param:
        k, v = pair.split("=", 1)
        try:
            extra[k] = json.loads(v)
        except json.JSONDecodeError:
            extra[k] = v  # a plain string such as frame_error=sum
    result: dict = {"dataset": str(DATA), "torch_threads": torch.get_num_threads()}
    if args.rescore:
        result["rescore"] = rescore(args.rescore, args.device, extra)
        print(json.dumps(result))
        return 0
    result.update(bench_playback())
    if not args.playback_only:
        result["engines"] = {}
        for name in [e for e in args.engines.split(",") if e]:
            result["engines"][name] = bench_engine(name, args.epochs, args.device, extra, args.save_dir)
            print(json.dumps({name: result["engines"][name]}), file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The appearance term's fit time at Ped2's full training size (decision 0036): the 3 shared training clips repeated to
18 clips (2,520 frames; all of Ped2 has 2,550 in 16 clips), fitted as the engine does (200 memory frames, 4 folds of
leave-clips-out statistics, the kept memory), frames already decoded; then the scoring time per frame. Training clips
only.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_video_appearance_fit.py
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from choose_video_defaults import DATA  # noqa: E402

from anomaly_gui.core.video_io import clips_from_items  # noqa: E402
from anomaly_gui.engines.video_common.appearance import AppearanceModel  # noqa: E402
from anomaly_gui.engines.video_common.data import load_clip_frames  # noqa: E402
from anomaly_gui.evaluation.video import read_split  # noqa: E402

torch.set_num_threads(1)
clips = [load_clip_frames(c, (360, 240)) for c in clips_from_items(read_split(DATA, "train"))]
many = clips * 6
t0 = time.perf_counter()
m = AppearanceModel()
m.fit(many, max_frames=200)
fit = time.perf_counter() - t0
t1 = time.perf_counter()
m.frame_scores(clips[0])
sc = (time.perf_counter() - t1) / len(clips[0])
print({"train_frames": sum(len(c) for c in many), "clips": len(many), "fit_s": round(fit, 1), "score_ms_per_frame": round(1000 * sc, 1)})

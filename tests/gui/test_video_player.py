"""The video player as a user drives it: keyboard (Space, arrows, Ctrl+arrows), clicks on the score curve,
the threshold line, scoring with a model in a worker, export, and the main-window wiring."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from anomaly_gui.core.video_io import VideoFileSource, clips_from_items, scan_ucsd
from tests.conftest import shared_dataset

N = 40  # Test001 frames 31..70: frames 61.. (local index 30..) are anomalous in frame_gt.json


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # shared CI cores: oversubscribed threads make tiny models 10x slower
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def test_items():
    items = [it for it in scan_ucsd(shared_dataset("ucsd_ped2"), "test") if it.group == "Test001"]
    return items[30 : 30 + N]


@pytest.fixture
def player(qtbot, test_items):
    from anomaly_gui.gui.state import AppState
    from anomaly_gui.gui.video_player_panel import VideoPlayerPanel

    panel = VideoPlayerPanel(AppState(), None)
    qtbot.addWidget(panel)
    panel.resize(900, 620)
    panel.show()
    qtbot.waitExposed(panel)
    clip = clips_from_items(test_items)[0]
    panel.load_clip(clip)
    scores = np.where(np.arange(N) >= 30, 0.8, 0.1).astype(np.float32)
    scores[10:13] = 0.7  # a short false alarm before the real event
    maps = np.zeros((N, 32, 48), np.float32)
    maps[30:, 10:20, 20:30] = 5.0
    panel.set_results(scores, maps, threshold=0.5, pixel_threshold=1.0)
    panel.setFocus()
    yield panel
    panel.close_clip()


def test_panel_is_registered_for_the_main_window():
    from anomaly_gui.gui.panels import discover_panels

    assert "video_player" in {c.panel_id for c in discover_panels()}


def test_arrow_keys_step_and_space_plays_and_pauses(qtbot, player):
    assert player.index == 0
    qtbot.keyClick(player, Qt.Key.Key_Right)
    qtbot.keyClick(player, Qt.Key.Key_Right)
    assert player.index == 2 and player.slider.value() == 2 and player.frame_label.text() == f"3 / {N}"
    qtbot.keyClick(player, Qt.Key.Key_Left)
    assert player.index == 1
    qtbot.keyClick(player, Qt.Key.Key_Left)
    qtbot.keyClick(player, Qt.Key.Key_Left)  # stays on the first frame
    assert player.index == 0
    player.speed.setCurrentIndex(player.speed.findData(8.0))
    qtbot.keyClick(player, Qt.Key.Key_Space)
    assert player.playing
    qtbot.waitUntil(lambda: player.index >= 5, timeout=5000)
    qtbot.keyClick(player, Qt.Key.Key_Space)
    assert not player.playing
    stopped = player.index
    qtbot.wait(150)
    assert player.index == stopped
    qtbot.keyClick(player, Qt.Key.Key_End)
    assert player.index == N - 1


def test_clicking_the_curve_seeks_and_overlay_follows(qtbot, player):
    qtbot.mouseClick(player.curve.viewport(), Qt.MouseButton.LeftButton, pos=player.curve.frame_to_widget(25))
    assert player.index == 25
    assert player.curve.playhead.value() == 25
    assert player.viewer.layer_item_count("contours:anomaly") == 1  # contours drawn, but nothing flagged yet
    assert "ANOMALY" not in player.viewer.info_label.text()
    qtbot.mouseClick(player.curve.viewport(), Qt.MouseButton.LeftButton, pos=player.curve.frame_to_widget(33))
    assert player.index == 33
    assert "ANOMALY" in player.viewer.info_label.text() and "ground truth: anomalous" in player.viewer.info_label.text()
    assert player.viewer.layer_item_count("boxes:regions") >= 1  # the flagged square has its region box


def test_segment_jumps_follow_the_threshold(qtbot, player):
    ctrl = Qt.KeyboardModifier.ControlModifier
    qtbot.keyClick(player, Qt.Key.Key_Right, ctrl)
    assert player.index == 10  # the short false alarm
    qtbot.keyClick(player, Qt.Key.Key_Right, ctrl)
    assert player.index == 30
    qtbot.keyClick(player, Qt.Key.Key_Left, ctrl)
    assert player.index == 10
    player.curve.threshold_line.setValue(0.75)  # as a drag does: the 0.7 alarm is no longer a segment
    assert player.threshold == pytest.approx(0.75)
    qtbot.keyClick(player, Qt.Key.Key_Home)
    qtbot.keyClick(player, Qt.Key.Key_Right, ctrl)
    assert player.index == 30


def test_export_csv_and_annotated_video(qtbot, player, tmp_path):
    path = player.export_csv_to(tmp_path / "scores.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == N and rows[0]["frame"] == "1" and rows[0]["verdict"] == "normal"
    assert rows[30]["verdict"] == "anomalous" and rows[30]["ground_truth"] == "anomalous"
    assert rows[0]["ground_truth"] == "normal"
    job = player.export_video_to(tmp_path / "clip.mp4")
    with qtbot.waitSignal(job.result, timeout=60000):
        pass
    out = VideoFileSource(tmp_path / "clip.mp4")
    assert len(out) == N and out.size == (360, 240)
    red = out.read(35)[:, :, 0].astype(int) - out.read(35)[:, :, 1].astype(int)
    assert red[:3].mean() > 100  # the red border of an anomalous frame
    assert (out.read(5)[:, :, 0].astype(int) - out.read(5)[:, :, 1].astype(int))[:3, 60:].mean() < 30


@pytest.mark.slow
def test_score_with_a_model_in_a_worker_and_keep_it_in_the_project(qtbot, test_items, tmp_path):
    from anomaly_gui.core.project import open_project
    from anomaly_gui.engines.base import get_engine
    from anomaly_gui.gui.state import AppState
    from anomaly_gui.gui.video_player_panel import VideoPlayerPanel

    train = [it for it in scan_ucsd(shared_dataset("ucsd_ped2"), "train") if it.group == "Train001"][:24]
    eng = get_engine("frame_ae")(device="cpu", width=48, height=32, epochs=2, batch_size=8)
    eng.fit(train)
    state = AppState()
    proj = open_project(tmp_path / "p.agproj")
    ids = proj.add_items(test_items)
    state.set_project(proj)
    panel = VideoPlayerPanel(state, None)
    qtbot.addWidget(panel)
    panel.show()
    state.set_current_item(ids[12])  # the browser selects a frame: its clip opens at that frame
    assert panel.clip is not None and len(panel.clip) == N and panel.index == 12
    panel.set_engine(eng)
    assert panel.score_btn.isEnabled()
    qtbot.mouseClick(panel.score_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.scores is not None and state.current_run is not None, timeout=60000)
    assert len(panel.scores) == N and panel.maps.shape == (N, 32, 48)
    stored = proj.scores(state.current_run)
    assert sorted(stored) == sorted(ids) and proj.run(state.current_run).task == "video"
    assert proj.score_map(state.current_run, ids[3]).shape == (32, 48)
    # reopening the clip from the project brings the stored scores back
    panel.close_clip()
    state.current_item = None
    state.set_current_item(ids[5])
    assert panel.scores is not None and np.allclose(panel.scores, [stored[i].score for i in ids])
    panel.close_clip()
    state.set_project(None)


def test_main_window_docks_the_player(window):
    assert "video_player" in window.panels
    assert window.panel_errors.get("video_player") is None


@pytest.mark.slow
def test_future_frame_chosen_in_train_panel_and_its_scores_appear_in_the_open_clip(qtbot, test_items, tmp_path,
                                                                                  mobilenet_weights):
    """The analyst opens a test clip in the player, chooses the future-frame predictor in the Train panel and
    trains it (tiny schedule): when the run ends, the open clip shows that run's frame scores and maps."""
    from anomaly_gui.core.project import open_project
    from tests.c2_engines import main_window_on, stop_jobs

    import dataclasses

    train = [dataclasses.replace(it, is_anomalous=False)  # training clips are normal (as the importer marks them)
             for it in scan_ucsd(shared_dataset("ucsd_ped2"), "train") if it.frame_index < 16]
    proj = open_project(tmp_path / "v.agproj")
    proj.add_items(train + list(test_items))
    proj.set_setting("train.params.future_frame", {"width": 48, "height": 32, "epochs": 1, "batch_size": 8, "past": 3})
    win = main_window_on(qtbot, proj)
    state = win.state
    player, tp = win.panels["video_player"], win.panels["train"]
    test_ids = [it.id for it in proj.items(split="test")]
    state.set_current_item(test_ids[5])
    assert player.clip is not None and len(player.clip) == N and player.scores is None
    tp.select_engine("future_frame")
    assert "4 before it" in tp.engine_desc.text()
    # issue 13's scoring and training options are in the form, with the engine's defaults; the analyst picks
    # the causal smoothing a live camera can use
    form = tp.form
    assert {"frame_scale", "smooth", "smooth_mode", "lr_schedule", "ema", "time_flip", "ensemble", "score_floor", "map_floor",
            "grad_score", "motion_score", "motion_weight", "flow_weight", "flow_box", "flow_width", "flow_height",
            "score_topk", "flip_average", "appearance_weight", "appearance_layers", "appearance_width",
            "appearance_height", "appearance_bank", "appearance_frames", "appearance_stat",
            "appearance_scale"} <= set(form.names())
    assert form.values()["frame_scale"] == "log"
    # decision 0033: centred smoothing (sigma 2) over the mean of the 64 largest boxes; the test-time flip an option
    assert (form.values()["smooth"], form.values()["smooth_mode"], form.values()["score_topk"]) == (2.0, "centred", 64)
    assert form.values()["flip_average"] is False
    form.widget("score_topk").setValue(16)
    form.widget("flip_average").setChecked(True)
    # decision 0036: the appearance term (MobileNetV2 patch memory); the analyst fuses it in at a quarter, at a
    # smaller frame size and memory (a short run)
    assert form.values()["appearance_width"] == 360 and form.values()["appearance_stat"] == "max"
    form.widget("appearance_weight").setValue(0.25)
    form.widget("appearance_width").setValue(120)
    form.widget("appearance_height").setValue(80)
    form.widget("appearance_bank").setValue(128)
    assert (form.values()["motion_score"], form.values()["score_floor"]) == (0.0, 0.02)  # decision 0026
    assert form.values()["flow_weight"] == 0.0  # the optical-flow speed term is an option (decision 0029)
    form.widget("motion_score").setValue(2.0)  # the analyst adds the motion error to the score
    form.widget("flow_weight").setValue(0.5)  # and fuses the optical-flow speed in at half weight
    form.widget("score_floor").setValue(0.005)
    form.widget("ensemble").setValue(2)  # a seed ensemble of two models, trained one after the other
    form.widget("smooth_mode").setCurrentIndex(form.widget("smooth_mode").findData("causal"))
    form.widget("smooth").setValue(2.0)
    with qtbot.waitSignal(tp.runFinished, timeout=120000) as blocker:
        qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    run_id = int(blocker.args[0])
    run = proj.run(run_id)
    assert run.status == "done" and run.engine == "future_frame" and run.params["width"] == 48
    assert (run.params["smooth_mode"], run.params["smooth"], run.params["frame_scale"]) == ("causal", 2.0, "log")
    assert run.params["ensemble"] == 2 and proj.run(run_id).status == "done"
    assert (run.params["motion_score"], run.params["score_floor"], run.params["map_floor"]) == (2.0, 0.005, 0.02)
    assert run.params["flow_weight"] == pytest.approx(0.5) and run.params["flow_box"] == 16
    assert run.params["score_topk"] == 16 and run.params["flip_average"] is True
    assert run.params["appearance_weight"] == pytest.approx(0.25) and run.params["appearance_bank"] == 128
    assert (run.params["appearance_width"], run.params["appearance_height"]) == (120, 80)
    assert "frame_auc" in run.metrics and "frame_auc_raw" in run.metrics
    # the open clip now shows this run: one score per frame, the stored ones, and a map per frame
    qtbot.waitUntil(lambda: player.scores is not None, timeout=5000)
    stored = proj.scores(run_id)
    assert np.allclose(player.scores, [stored[i].score for i in sorted(test_ids)])
    # frames are flagged on the frame scores' own threshold (dB), not the run's threshold on map values
    assert player.maps.shape == (N, 32, 48) and player.threshold == pytest.approx(run.metrics["frame_threshold"])
    # a validation clip here: just above every normal validation frame's score (the maps' threshold is ~100x that)
    from anomaly_gui.core.run_files import run_split

    val_ids = set(run_split(proj, run_id)["val"])
    val_scores = [stored[i].score for i in stored if i in val_ids]
    assert val_scores and max(val_scores) < player.threshold <= np.nextafter(np.float32(max(val_scores) + 1e-3), np.float32(np.inf))
    # the engine also measured its training clips as unseen ones (appearance term on): used without validation frames
    assert "frame_threshold_training" in run.metrics
    assert player.threshold != pytest.approx(run.threshold, rel=0.5)
    metrics = win.panels["metrics"]
    qtbot.waitUntil(lambda: "video player flags a frame" in metrics.setting.text(), timeout=5000)
    assert f"score ≥ {player.threshold:.4g}" in metrics.setting.text()
    # regions are outlined above the pixel threshold learnt on the training frames, not a quantile of this clip
    assert run.metrics["pixel_threshold"] > 0
    assert player.pixel_thr.value() == pytest.approx(run.metrics["pixel_threshold"], rel=1e-3)
    assert player.export_csv_btn.isEnabled()
    # the frames box of the Metrics panel counts the frames at the player's threshold
    qtbot.waitUntil(lambda: not metrics.frames.isHidden(), timeout=5000)
    stored_thr, counts = run.metrics["frame_threshold"], dict(metrics.frames.counts)
    # a run from before the frame threshold was stored with its metrics: the panel computes the same threshold
    proj.update_run(run_id, metrics={k: v for k, v in run.metrics.items() if not k.startswith("frame_threshold")})
    assert "frame_threshold" not in proj.run(run_id).metrics
    state.runsChanged.emit()
    qtbot.waitUntil(lambda: metrics.frame_threshold is not None and metrics.frames.counts is not None, timeout=5000)
    assert metrics.frame_threshold == (run_id, pytest.approx(stored_thr))
    assert not metrics.frames.isHidden() and metrics.frames.counts == counts
    stop_jobs(qtbot)
    win.close()
    proj.close()


@pytest.mark.slow
def test_memae_chosen_in_train_panel_trains_and_its_scores_appear_in_the_open_clip(qtbot, test_items, tmp_path):
    """The memory-augmented autoencoder (Gong 2019) is offered for video in the Train panel with its memory
    settings; the analyst shrinks the memory, trains (tiny schedule) and the open clip shows the run's scores."""
    import dataclasses

    from anomaly_gui.core.project import open_project
    from tests.c2_engines import main_window_on, stop_jobs

    train = [dataclasses.replace(it, is_anomalous=False)
             for it in scan_ucsd(shared_dataset("ucsd_ped2"), "train") if it.frame_index < 16]
    proj = open_project(tmp_path / "m.agproj")
    proj.add_items(train + list(test_items))
    proj.set_setting("train.params.memae", {"epochs": 1, "batch_size": 8})
    win = main_window_on(qtbot, proj)
    player, tp = win.panels["video_player"], win.panels["train"]
    test_ids = [it.id for it in proj.items(split="test")]
    win.state.set_current_item(test_ids[5])
    tp.select_engine("memae")
    assert "memory of normal prototypes" in tp.engine_desc.text()
    form = tp.form
    assert {"memory_slots", "shrink", "entropy_weight", "window"} <= set(form.names())
    assert (form.values()["memory_slots"], form.values()["window"]) == (500, 8)
    form.widget("memory_slots").setValue(64)
    with qtbot.waitSignal(tp.runFinished, timeout=120000) as blocker:
        qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    run = proj.run(int(blocker.args[0]))
    assert run.status == "done" and run.engine == "memae" and run.params["memory_slots"] == 64
    assert "frame_auc_raw" in run.metrics
    qtbot.waitUntil(lambda: player.scores is not None, timeout=5000)
    stored = proj.scores(run.id)
    assert np.allclose(player.scores, [stored[i].score for i in sorted(test_ids)])
    assert player.maps.shape == (N, 32, 48)
    stop_jobs(qtbot)
    win.close()
    proj.close()

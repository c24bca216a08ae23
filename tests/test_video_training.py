"""The CPU training loop of the video engines (issue 15) and the future-frame predictor (issue 13):
held-out windows, early stopping with the best weights kept, clips decoded once in threads, and a
predictor that scores every frame of a clip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly_gui.core.video_io import clips_from_items, scan_ucsd
from anomaly_gui.engines.base import RunContext, get_engine
from anomaly_gui.engines.video_common.training import decode_clips, split_windows, to_tensors, train_loop
from tests.conftest import shared_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_held_out_windows_share_no_frame_with_training_windows():
    train, val = split_windows([100, 60], window=5, val_fraction=0.1)
    assert len(val) == 10 + 6  # the last tenth of each clip's windows (96 and 56 windows)
    for ci in (0, 1):
        t_frames = {f for c, s in train if c == ci for f in range(s, s + 5)}
        v_frames = {f for c, s in val if c == ci for f in range(s, s + 5)}
        assert v_frames and not t_frames & v_frames
        assert max(t_frames) + 1 == min(v_frames)  # only the overlapping windows are dropped
    # too few windows to hold any out: all of them train, nothing validates
    assert split_windows([20], window=5, val_fraction=0.1) == ([(0, s) for s in range(16)], [])
    assert split_windows([100], window=5, val_fraction=0.0)[1] == []


class _Scalar(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))


def test_early_stopping_stops_when_held_out_loss_rises_and_keeps_the_best_weights():
    """Training pulls p towards 1, the held-out loss is lowest at p = 0.3: training must stop a few
    epochs after p passes 0.3 and give back the weights of the best epoch."""
    m = _Scalar()
    clips = [torch.zeros(200, 2, 2)]

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (m.p - 1.0) ** 2 if m.training else (m.p - 0.3) ** 2

    logged: list[dict] = []
    res = train_loop(m, loss, clips, 2, epochs=50, batch_size=200, lr=0.05, patience=2, val_fraction=0.1, seed=0,
                     ctx=RunContext(log=logged.append))
    assert res.stopped_early and len(res.history) == res.best_epoch + 2 < 50
    assert res.val_history[res.best_epoch - 1] == min(res.val_history)
    assert abs(float(m.p.detach()) - 0.3) < 0.06  # the best epoch's weight, not the last one
    assert [e["epoch"] for e in logged] == list(range(1, len(res.history) + 1)) and "val_loss" in logged[0]
    # patience 0: no hold-out, every epoch runs
    m2 = _Scalar()
    res2 = train_loop(m2, lambda x: (m2.p - 1.0) ** 2, clips, 2, epochs=5, batch_size=200, lr=0.05, patience=0,
                      val_fraction=0.1, seed=0, ctx=RunContext())
    assert len(res2.history) == 5 and res2.val_history == [] and res2.n_val_windows == 0


def test_cosine_schedule_and_weight_average_follow_their_formulas():
    """Loss p: Adam moves p by exactly lr a step (constant gradient), so the cosine schedule's steps sum to
    lr * (1 + .854 + .5 + .146); the averaged weights returned are the EMA of the training weights."""
    clips = [torch.zeros(200, 2, 2)]

    def run(epochs: int, **kw) -> float:
        m = _Scalar()
        train_loop(m, lambda x: m.p * 1.0, clips, 2, epochs=epochs, batch_size=200, lr=0.1, patience=0,
                   val_fraction=0.0, seed=0, ctx=RunContext(), **kw)
        return float(m.p.detach())

    assert run(4) == pytest.approx(-0.4, abs=1e-4)
    assert run(4, lr_schedule="cosine") == pytest.approx(-0.1 * (1 + 0.85355 + 0.5 + 0.14645), abs=1e-4)
    traj = [run(k) for k in (1, 2, 3)]  # training weights after each step (1 step an epoch)
    ema = 0.0
    for p in traj:
        ema = 0.5 * ema + 0.5 * p
    assert run(3, ema=0.5) == pytest.approx(ema, abs=1e-5) and ema > traj[-1]
    with pytest.raises(ValueError):
        run(1, lr_schedule="step")


def test_time_flip_plays_training_windows_backwards_but_not_the_held_out_ones():
    eng = get_engine("future_frame")(device="cpu", width=48, height=32, past=3, time_flip=1.0)
    eng.module = eng.build_module()
    x = torch.linspace(-1, 1, 4 * 4 * 32 * 48).reshape(4, 4, 32, 48)
    with torch.no_grad():
        eng.module.eval()  # measuring held-out windows: as they are
        assert float(eng._augmented_loss(x)) == pytest.approx(float(eng.training_loss(x)))
        eng.module.train()  # batch norm in training mode, but no weights change under no_grad
        assert float(eng._augmented_loss(x)) == pytest.approx(float(eng.training_loss(x.flip(1))))
        assert float(eng.training_loss(x.flip(1))) != pytest.approx(float(eng.training_loss(x)))
        eng.params.time_flip = 0.0
        assert float(eng._augmented_loss(x)) == pytest.approx(float(eng.training_loss(x)))


def test_clips_decoded_in_threads_equal_the_sequential_decode():
    items = [it for it in scan_ucsd(shared_dataset("ucsd_ped2"), "train") if it.frame_index < 12]
    clips = clips_from_items(items)
    assert len(clips) >= 2
    seq = decode_clips(clips, (48, 32), RunContext(), threads=1)
    par = decode_clips(clips, (48, 32), RunContext(), threads=2)
    assert [f.shape for f in par] == [(12, 32, 48)] * len(clips)
    assert all(np.array_equal(a, b) for a, b in zip(seq, par))
    t = to_tensors(par, "cpu")[0]
    assert t.dtype == torch.float32 and float(t.min()) >= -1.0 and float(t.max()) <= 1.0
    assert float(t[0, 0, 0]) == pytest.approx(par[0][0, 0, 0] * 2 / 255 - 1, abs=1e-6)


def test_predictor_scores_every_frame_and_the_first_ones_take_the_first_prediction():
    # the intensity error alone (the motion term is added as tested below)
    eng = get_engine("future_frame")(device="cpu", width=48, height=32, past=3, epochs=1, motion_score=0.0)
    eng.module = eng.build_module().eval()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (9, 32, 48), dtype=np.uint8)
    raw = eng._clip_raw(frames)
    assert raw.shape == (9, 32, 48)
    # frames 0..2 have no past to be predicted from: they take frame 3's error
    assert np.array_equal(raw[0], raw[3]) and np.array_equal(raw[2], raw[3]) and not np.array_equal(raw[3], raw[4])
    # frame 5's error is the squared error of predicting it from frames 2..4
    x = to_tensors([frames], "cpu")[0]
    with torch.no_grad():
        pred = eng.module(x[2:5][None])[0, 0]
    expected = (((pred - x[5]) * 0.5) ** 2).numpy()
    assert np.allclose(raw[5], expected, atol=1e-6)


def test_a_large_training_set_gets_fewer_epochs_under_the_window_cap():
    from anomaly_gui.engines.video_common.training import epochs_for

    assert epochs_for(250, 15, 4000) == 15  # the shared Ped2 clips: the epoch ceiling decides
    assert epochs_for(2143, 15, 4000) == 2  # all of Ped2: about the same number of steps
    assert epochs_for(100_000, 15, 4000) == 1 and epochs_for(250, 15, 0) == 15
    m = _Scalar()
    res = train_loop(m, lambda x: (m.p - 1.0) ** 2, [torch.zeros(104, 2, 2)], 5, epochs=10, batch_size=50, lr=0.01,
                     patience=0, val_fraction=0.0, seed=0, ctx=RunContext(), max_windows=250)
    assert len(res.history) == 3  # 100 windows an epoch, 250 asked: 3 whole epochs
    assert get_engine("future_frame").Params().max_windows == 4000 and get_engine("stacked_ae").Params().max_windows == 0


def test_motion_loss_compares_the_size_of_the_change_not_the_frame():
    """The motion loss (issue 13, no flow network) is zero when the predicted change since the last input frame is
    as large as the real one, even if the frame itself is wrong, and counts a change that was not predicted."""
    from anomaly_gui.engines.future_frame.model import gradient_magnitude, motion_loss

    g = torch.Generator().manual_seed(0)
    last, target = torch.rand(2, 1, 8, 12, generator=g), torch.rand(2, 1, 8, 12, generator=g)
    mirrored = 2 * last - target  # the same change in the other direction: a wrong frame, the right amount of motion
    assert float(motion_loss(mirrored, target, last)) == pytest.approx(0.0, abs=1e-6)
    assert float((mirrored - target).abs().mean()) > 0.1
    assert float(motion_loss(last, target, last)) == pytest.approx(float((target - last).abs().mean()), rel=1e-6)
    ramp = 0.1 * torch.arange(12.0).expand(1, 1, 8, 12)  # |d/dx| = 0.1, d/dy = 0, also in the last column
    assert torch.allclose(gradient_magnitude(ramp), torch.full((1, 1, 8, 12), 0.1), atol=1e-6)


def test_predictor_loss_and_score_add_the_motion_and_gradient_terms_with_their_weights():
    from anomaly_gui.engines.future_frame.model import gradient_loss, gradient_magnitude, motion_loss

    params = get_engine("future_frame").Params()
    assert (params.motion_weight, params.grad_score, params.motion_score) == (0.0, 0.0, 0.0)  # options (decision 0026)
    eng = get_engine("future_frame")(device="cpu", width=48, height=32, past=3, epochs=1, motion_score=0.0)
    torch.manual_seed(0)
    eng.module = eng.build_module().eval()
    x = torch.rand(4, 4, 32, 48) * 2 - 1
    with torch.no_grad():
        pred, target, last = eng.module(x[:, :3]), x[:, 3:], x[:, 2:3]
        base = float(eng.training_loss(x))
        assert base == pytest.approx(float(torch.nn.functional.mse_loss(pred, target) + gradient_loss(pred, target)))
        eng.params.motion_weight = 2.0
        assert float(eng.training_loss(x)) == pytest.approx(base + 2.0 * float(motion_loss(pred, target, last)), rel=1e-5)
        intensity, off = eng.window_errors(x)
        assert off == 3 and torch.allclose(intensity, ((pred - target) * 0.5) ** 2)  # both score weights at 0
        eng.params.grad_score, eng.params.motion_score = 0.5, 2.0
        err, _ = eng.window_errors(x)
    grad = ((gradient_magnitude(pred) - gradient_magnitude(target)) * 0.5) ** 2
    motion = (((pred - last).abs() - (target - last).abs()) * 0.5) ** 2
    assert torch.allclose(err, intensity + 0.5 * grad + 2.0 * motion, atol=1e-6)
    assert float((err - intensity).abs().max()) > 1e-3  # the terms change the score

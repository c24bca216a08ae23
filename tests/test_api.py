"""`from anomaly_gui import AnomalyDetector`: train / save / load / test as the original interface promised."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anomaly_gui.core.errors import DataError, ModelFileError
from anomaly_gui.core.imageio import read_image
from tests.test_engines_image import small_mvtec

torch.set_num_threads(2)
PARAMS = dict(image_size=128, n_words=32)  # CNN self-similarity: quick and accurate on leather


@pytest.fixture(autouse=True)
def _weights_env(monkeypatch, mobilenet_weights):
    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(mobilenet_weights.parent))


@pytest.fixture(scope="module")
def leather(tmp_path_factory) -> Path:
    return small_mvtec("mvtec_leather", tmp_path_factory.mktemp("api_data"))


@pytest.fixture(scope="module")
def detector(leather):
    from anomaly_gui import AnomalyDetector

    ad = AnomalyDetector(method="selfsimilarity", device="cpu", min_area=50, **PARAMS)
    summary = ad.train(leather / "train" / "good", val_dir=leather)  # validation with labelled anomalies
    return ad, summary


@pytest.mark.slow
def test_train_with_labelled_validation_then_test_writes_overlays(detector, leather, tmp_path):
    ad, summary = detector
    assert summary["method"] == "f1" and summary["n_train"] == 4 and summary["n_val"] == 24
    assert summary["f1"] >= 0.9
    assert ad.threshold == pytest.approx(summary["threshold"])
    results = ad.test(leather / "test", tmp_path / "out")
    assert len(results) == 24
    names = {Path(r.overlay_path).name for r in results}
    assert "cut_000_overlay.png" in names and "good_000_overlay.png" in names  # same stems get their folder
    flagged = [r.anomalous for r in results]
    truth = ["good" not in r.path for r in results]
    assert np.mean(np.array(flagged) == np.array(truth)) >= 0.9
    hit = next(r for r in results if r.anomalous)
    mask = read_image(hit.mask_path)
    overlay = read_image(hit.overlay_path)
    assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255} and (mask > 0).sum() >= 50
    assert overlay.shape == (256, 256, 3)
    ys, xs = np.nonzero(mask)
    red = overlay[ys, xs].astype(int)
    assert (red[:, 0] - red[:, 1]).mean() > 40  # anomalies drawn in red
    assert hit.regions and all(reg["area"] >= 50 for reg in hit.regions)
    # a single image in, one result out
    single = ad.test(leather / "test" / "good" / "000.png")
    assert len(single) == 1 and single[0].overlay_path is None and single[0].score is not None


@pytest.mark.slow
def test_save_load_round_trip_and_bad_files(detector, leather, tmp_path):
    from anomaly_gui import AnomalyDetector

    ad, _ = detector
    path = ad.save(tmp_path / "leather.agm")
    back = AnomalyDetector.load(path, device="cpu")
    assert back.method == "selfsimilarity" and back.threshold == ad.threshold and back.min_area == 50
    imgs = [str(p) for p in sorted((leather / "test" / "cut").glob("*.png"))]
    a, b = ad.predict(imgs), back.predict(imgs)
    assert [r.score for r in a] == [r.score for r in b] and [r.anomalous for r in a] == [r.anomalous for r in b]
    bad = tmp_path / "bad.agm"
    bad.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(ModelFileError, match="bad.agm"):
        AnomalyDetector.load(bad)
    foreign = tmp_path / "foreign.agm"
    torch.save({"a": torch.zeros(3)}, foreign)  # a pickle: never unpickled
    with pytest.raises(ModelFileError, match="foreign.agm"):
        AnomalyDetector.load(foreign)


@pytest.mark.slow
def test_single_image_training_and_normal_only_threshold(leather, tmp_path):
    from anomaly_gui import AnomalyDetector
    from anomaly_gui.core import postprocess as pp

    ad = AnomalyDetector(method="selfsimilarity", device="cpu", **PARAMS)
    summary = ad.train(leather / "train" / "good" / "000.png")
    assert summary["n_train"] == 1 and summary["method"] == "normal_max"  # threshold from the image itself
    # the smallest threshold at which the normal image has no region: it is normal, the threshold tight
    res = ad.score(leather / "train" / "good" / "000.png")[0][1]
    assert not pp.postprocess(res.map, ad.threshold, 0).anomalous
    assert res.map.max() < ad.threshold <= res.map.max() * 1.0001
    # random validation split out of a folder of normal images
    ad2 = AnomalyDetector(method="selfsimilarity", device="cpu", val_fraction=0.5, **PARAMS)
    s2 = ad2.train(leather / "train" / "good")
    assert s2["n_train"] == 2 and s2["n_val"] == 2 and s2["method"] == "normal_max"


def test_bad_inputs_have_clear_messages(tmp_path):
    from anomaly_gui import AnomalyDetector

    with pytest.raises(DataError, match="missing"):
        AnomalyDetector(method="selfsimilarity", device="cpu").train(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        AnomalyDetector(method="selfsimilarity", device="cpu").train(tmp_path / "empty")
    with pytest.raises(KeyError, match="unknown engine"):
        AnomalyDetector(method="nope")
    with pytest.raises(RuntimeError, match="train"):
        AnomalyDetector(method="selfsimilarity", device="cpu").test(tmp_path)

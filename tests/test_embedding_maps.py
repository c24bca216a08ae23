"""2-D maps, k-distance knee, DBSCAN noise, lasso polygon test and embedding storage."""
from __future__ import annotations

import numpy as np
import pytest

from anomaly_gui.core.embedding_maps import (EmbeddingSet, compute_cluster_map, dbscan_labels, k_distance,
                                             load_embedding_set, pca_2d, points_in_polygon, save_embedding_set,
                                             suggest_eps, tsne_2d)
from anomaly_gui.core.errors import DataError


def _blobs(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [12, 0, 0, 0], [0, 12, 0, 0]], float)
    x = np.concatenate([c + rng.normal(size=(50, 4)) for c in centres] + [np.array([[6, 6, 9, 0], [-9, -9, 0, 9]])])
    return x.astype(np.float32)


def test_pca_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(1).normal(size=(120, 9)) * np.arange(1, 10)
    ours = pca_2d(x)
    ref = PCA(2).fit_transform(x)
    for j in range(2):
        assert min(np.abs(ours[:, j] - ref[:, j]).max(), np.abs(ours[:, j] + ref[:, j]).max()) < 1e-3
    wide = np.random.default_rng(2).normal(size=(600, 400)).astype(np.float32)  # randomised path
    wide[:, 0] *= 20
    ref = PCA(2).fit_transform(wide)
    assert abs(np.corrcoef(pca_2d(wide)[:, 0], ref[:, 0])[0, 1]) > 0.999
    assert pca_2d(np.zeros((0, 3))).shape == (0, 2) and pca_2d(np.ones((1, 3))).shape == (1, 2)


def test_tsne_keeps_blobs_apart_and_small_inputs_work():
    x = _blobs()
    xy = tsne_2d(x, perplexity=15, n_iter=250)
    assert xy.shape == (152, 2) and np.isfinite(xy).all()
    c = [xy[i * 50:(i + 1) * 50].mean(0) for i in range(3)]
    spread = max(np.linalg.norm(xy[i * 50:(i + 1) * 50] - c[i], axis=1).mean() for i in range(3))
    assert min(np.linalg.norm(c[0] - c[1]), np.linalg.norm(c[0] - c[2]), np.linalg.norm(c[1] - c[2])) > 2 * spread
    assert tsne_2d(x[:3]).shape == (3, 2)
    assert tsne_2d(x[:8]).shape == (8, 2)  # perplexity capped


def test_kdistance_knee_makes_isolated_points_noise():
    xy = pca_2d(_blobs())
    kd = k_distance(xy, 4)
    assert kd.shape == (152,) and np.all(np.diff(kd) >= 0)
    eps = suggest_eps(kd)
    assert kd[0] <= eps <= kd[-1]
    labels = dbscan_labels(xy, eps, 5)
    assert len(set(labels.tolist()) - {-1}) == 3
    assert labels[-1] == -1 and labels[-2] == -1, "the two isolated points are noise (anomalies)"
    assert (labels == -1).sum() < 15
    assert suggest_eps(np.array([1.0, 1.0, 1.0])) == 1.0


def test_points_in_polygon_square_and_concave():
    pts = np.array([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [-0.1, 0.2], [0.9, 0.1]])
    square = [(0, 0), (1, 0), (1, 1), (0, 1)]
    assert points_in_polygon(pts, square).tolist() == [True, False, False, False, True]
    # an L shape: the notch (1.5, 1.5) is outside
    ell = [(0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2)]
    assert points_in_polygon(np.array([[1.5, 0.5], [0.5, 1.5], [1.5, 1.5]]), ell).tolist() == [True, True, False]
    assert not points_in_polygon(pts, [(0, 0), (1, 1)]).any()


def test_embedding_set_round_trip_and_damage(tmp_path):
    es = EmbeddingSet(np.array([3, 5, 9]), np.eye(3, 4, dtype=np.float32), ["fox", "owl", "fox"],
                      np.array([0.1, 2.0, -1.0], np.float32), [None, [1, 2, 3, 4], None], {"engine": "x"})
    save_embedding_set(tmp_path / "e", es)
    back = load_embedding_set(tmp_path / "e")
    assert back.item_ids.tolist() == [3, 5, 9] and back.labels == es.labels and back.crop_boxes == es.crop_boxes
    np.testing.assert_array_equal(back.embeddings, es.embeddings)
    np.testing.assert_array_equal(back.scores, es.scores)
    (tmp_path / "e" / "embeddings.json").write_text("{oops")
    with pytest.raises(DataError, match="embeddings.json"):
        load_embedding_set(tmp_path / "e")
    cm = compute_cluster_map(EmbeddingSet(np.arange(152), _blobs()), method="pca", min_samples=5)
    assert cm.xy.shape == (152, 2) and cm.clusters.shape == (152,) and cm.eps > 0

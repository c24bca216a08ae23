"""Per-species novelty scorers on embeddings, with calibrated per-species scales.

Each scorer maps embeddings to a (n, n_species) matrix of *normalised* distances: 1.0 is a typical
distance of the species' own training photos, so one threshold works across species.

- `knn` (default): cosine distance to the k-th nearest training embedding of the species; the scale is
  the species' leave-one-out k-NN distance, shrunk towards the median of all species (few photos
  give a noisy scale).
- `mahalanobis`: distance to the species mean under one shared, shrunk covariance (Lee et al. 2018),
  computed in a PCA space of the training embeddings plus what lies outside it (at the shrinkage variance);
  scale as above from the training distances.
- `ocsvm`: the seed's RBF one-class SVM per species; score = -decision / spread of training decisions,
  shifted so that 1.0 is the boundary.

All state is plain arrays (saved in safetensors, never pickled).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from anomaly_gui.engines.embedding.oneclass import OneClassModel, fit_oneclass, models_from_tensors, models_to_tensors

SCORERS = ("knn", "mahalanobis", "ocsvm")
_SHRINK = 2.0  # pseudo-count of the median scale in a species' calibrated scale


def species_groups(labels: Sequence[str]) -> dict[str, np.ndarray]:
    names = sorted(set(labels))
    return {s: np.array([i for i, lab in enumerate(labels) if lab == s]) for s in names}


def _calibrated(own: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
    """Per-species scale shrunk towards the median of all species, in log space (spreads differ by orders
    of magnitude); a species with one photo takes the median."""
    logs = {s: float(np.log(v)) for s, v in own.items() if np.isfinite(v) and v > 0}
    med = float(np.median(list(logs.values()))) if logs else 0.0
    out = {}
    for s, n in counts.items():
        m = n - 1 if s in logs else 0  # leave-one-out values come from n-1 neighbours
        out[s] = float(np.exp((m * logs.get(s, 0.0) + _SHRINK * med) / (m + _SHRINK)))
    return {s: max(v, 1e-9) for s, v in out.items()}


class KNNScorer:
    """k-NN distance per species. `metric` cosine (unit-length embeddings, per-species calibrated scales) or
    euclidean with one `shared_scale` for all species (raw features: the issue's untrained kNN baseline, whose
    ranking it keeps; the shared scale only makes 1.0 a typical same-species distance)."""

    name = "knn"

    def __init__(self, k: int = 1, metric: str = "cosine", shared_scale: bool = False):
        self.k = max(1, int(k))
        self.metric, self.shared_scale = metric, shared_scale
        self.banks: dict[str, np.ndarray] = {}
        self.scales: dict[str, float] = {}

    def fit(self, emb: np.ndarray, labels: Sequence[str]) -> "KNNScorer":
        groups = species_groups(labels)
        self.banks = {s: np.asarray(emb[rows], np.float32) for s, rows in groups.items()}
        own: dict[str, float] = {}
        for s, bank in self.banks.items():
            if len(bank) < 2:
                continue
            d = self._dist(bank, bank)
            np.fill_diagonal(d, np.inf)
            own[s] = float(np.mean(_kth(d, min(self.k, len(bank) - 1))))
        self.scales = _calibrated(own, {s: len(b) for s, b in self.banks.items()})
        if self.shared_scale:  # one scale (the median species') keeps the ranking of the plain distance
            med = float(np.median(list(own.values()))) if own else float(np.median(list(self.scales.values())))
            self.scales = {s: max(med, 1e-9) for s in self.scales}
        return self

    def _dist(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _cosine_dist(a, b) if self.metric == "cosine" else _euclidean_dist(a, b)

    @property
    def species(self) -> list[str]:
        return sorted(self.banks)

    def distances(self, emb: np.ndarray) -> np.ndarray:
        cols = [_kth(self._dist(emb, self.banks[s]), min(self.k, len(self.banks[s]))) / self.scales[s] for s in self.species]
        return np.stack(cols, 1) if cols else np.zeros((len(emb), 0))

    def to_tensors(self) -> dict[str, np.ndarray]:
        out = {f"knn.{i}.bank": self.banks[s] for i, s in enumerate(self.species)}
        out["knn.scales"] = np.array([self.scales[s] for s in self.species], np.float64)
        out["knn.k"] = np.array([self.k], np.int64)
        if self.metric != "cosine":
            out["knn.euclidean"] = np.array([1], np.int64)
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, Any], species: list[str]) -> "KNNScorer":
        sc = cls(int(_np(t["knn.k"])[0]), metric="euclidean" if "knn.euclidean" in t else "cosine")
        scales = _np(t["knn.scales"])
        sc.banks = {s: _np(t[f"knn.{i}.bank"]).astype(np.float32) for i, s in enumerate(species)}
        sc.scales = {s: float(scales[i]) for i, s in enumerate(species)}
        return sc


class MahalanobisScorer:
    """Distance to each species mean under one shared, shrunk covariance. The covariance is estimated in
    the PCA space of the training embeddings (at most `max_dim` axes); what a photo has *outside* that
    space counts too, at the shrinkage target's variance, so an animal unlike every training photo is not
    projected onto them (with one known species the PCA space is that species' spread alone)."""

    name = "mahalanobis"

    def __init__(self, max_dim: int = 64, shrinkage: float = 0.5):
        self.max_dim, self.shrinkage = max_dim, shrinkage
        self.means: dict[str, np.ndarray] = {}  # per species, in the embedding space
        self.scales: dict[str, float] = {}
        self.center = np.zeros(1)
        self.proj = np.zeros((1, 1))  # embedding -> whitened PCA space
        self.basis: np.ndarray | None = None  # (d, keep) PCA axes; None: a model file without the outside term
        self.outside_var = 1.0

    def fit(self, emb: np.ndarray, labels: Sequence[str]) -> "MahalanobisScorer":
        x = np.asarray(emb, np.float64)
        groups = species_groups(labels)
        self.center = x.mean(0)
        xc = x - self.center
        _, sv, vt = np.linalg.svd(xc, full_matrices=False)
        keep = max(1, min(self.max_dim, int((sv > 1e-6 * max(sv[0], 1e-12)).sum())))
        basis = vt[:keep].T  # (d, keep)
        z = xc @ basis
        resid = np.concatenate([z[rows] - z[rows].mean(0) for rows in groups.values()], 0)
        cov = resid.T @ resid / max(len(resid) - len(groups), 1) if len(resid) > len(groups) else np.eye(keep) * float(z.var() or 1.0)
        target = max(float(np.trace(cov)) / keep, 1e-9)
        cov = (1 - self.shrinkage) * cov + self.shrinkage * np.eye(keep) * target
        evals, evecs = np.linalg.eigh(cov)
        self.proj = basis @ (evecs / np.sqrt(np.maximum(evals, 1e-12)))
        self.basis, self.outside_var = basis, self.shrinkage * target
        self.means = {s: x[rows].mean(0) for s, rows in groups.items()}
        own = {}
        for s, rows in groups.items():
            if len(rows) >= 2:  # leave-one-out: distance of each photo to the mean of the others
                n = len(rows)
                loo = (x[rows].sum(0)[None] - x[rows]) / (n - 1)
                own[s] = float(np.mean(self._dist(x[rows], loo)))
        self.scales = _calibrated(own, {s: len(r) for s, r in groups.items()})
        return self

    def _dist(self, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        diff = np.asarray(x, np.float64) - mean
        d2 = ((diff @ self.proj) ** 2).sum(1)
        if self.basis is not None:
            outside = diff - (diff @ self.basis) @ self.basis.T
            d2 = d2 + (outside ** 2).sum(1) / self.outside_var
        return np.sqrt(d2)

    @property
    def species(self) -> list[str]:
        return sorted(self.means)

    def distances(self, emb: np.ndarray) -> np.ndarray:
        cols = [self._dist(emb, self.means[s][None]) / self.scales[s] for s in self.species]
        return np.stack(cols, 1) if cols else np.zeros((len(emb), 0))

    def to_tensors(self) -> dict[str, np.ndarray]:
        out = {"maha.means": np.stack([self.means[s] for s in self.species]), "maha.center": self.center,
               "maha.proj": self.proj, "maha.scales": np.array([self.scales[s] for s in self.species], np.float64)}
        if self.basis is not None:
            out.update({"maha.basis": self.basis, "maha.outside_var": np.array([self.outside_var], np.float64)})
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, Any], species: list[str]) -> "MahalanobisScorer":
        sc = cls()
        means, scales = _np(t["maha.means"]), _np(t["maha.scales"])
        sc.center, sc.proj = _np(t["maha.center"]).astype(np.float64), _np(t["maha.proj"]).astype(np.float64)
        sc.scales = {s: float(scales[i]) for i, s in enumerate(species)}
        if "maha.basis" in t:
            sc.basis, sc.outside_var = _np(t["maha.basis"]).astype(np.float64), float(_np(t["maha.outside_var"])[0])
            sc.means = {s: means[i].astype(np.float64) for i, s in enumerate(species)}
        else:  # saved before 2026-11-30: means kept in the whitened space, no outside term
            back = np.linalg.pinv(sc.proj)  # whitened -> embedding space (within the PCA span)
            sc.means = {s: means[i].astype(np.float64) @ back + sc.center for i, s in enumerate(species)}
        return sc


class OCSVMScorer:
    """One RBF one-class SVM per species. `baseline`: as the issue's untrained reference fits them
    (scikit-learn's defaults: nu 0.5, gamma 'scale' per species) with one shared spread for all species, which
    keeps the ranking of its plain decision values."""

    name = "ocsvm"

    def __init__(self, nu: float = 0.1, gamma: float = 0.0, baseline: bool = False):
        self.nu, self.gamma, self.baseline = (0.5, 0.0, True) if baseline else (nu, gamma, False)
        self.models: dict[str, OneClassModel] = {}

    def fit(self, emb: np.ndarray, labels: Sequence[str]) -> "OCSVMScorer":
        if self.baseline:  # gamma 'scale' of each species' own photos, as scikit-learn's default
            self.models = {s: fit_oneclass(emb[rows], nu=self.nu, gamma=None, exact=True) for s, rows in species_groups(labels).items()}
            spread = float(np.median([m.train_scale for m in self.models.values()]))
            for m in self.models.values():
                m.train_scale = spread
            return self
        gamma = self.gamma if self.gamma > 0 else shared_gamma(emb)
        self.gamma = gamma
        self.models = {s: fit_oneclass(emb[rows], nu=self.nu, gamma=gamma) for s, rows in species_groups(labels).items()}
        return self

    @property
    def species(self) -> list[str]:
        return sorted(self.models)

    def distances(self, emb: np.ndarray) -> np.ndarray:
        cols = [1.0 - self.models[s].normalised(emb) for s in self.species]  # 1.0 = on the boundary
        return np.stack(cols, 1) if cols else np.zeros((len(emb), 0))

    def to_tensors(self) -> dict[str, np.ndarray]:
        return models_to_tensors(self.models)[0]

    @classmethod
    def from_tensors(cls, t: dict[str, Any], species: list[str]) -> "OCSVMScorer":
        sc = cls()
        sc.models = models_from_tensors(t, species)
        sc.gamma = next(iter(sc.models.values())).gamma if sc.models else 0.0
        return sc


def make_scorer(name: str = "knn", k: int = 1, nu: float = 0.1, gamma: float = 0.0,
                raw: bool = False) -> KNNScorer | MahalanobisScorer | OCSVMScorer:
    """A scorer by name. `raw`: for raw (not unit-length) features, the untrained baseline's settings (Euclidean
    k-NN, scikit-learn's one-class SVM defaults), each with one scale shared by all species."""
    if name == "knn":
        return KNNScorer(k, metric="euclidean", shared_scale=True) if raw else KNNScorer(k)
    if name == "mahalanobis":
        return MahalanobisScorer()
    if name == "ocsvm":
        return OCSVMScorer(nu, gamma, baseline=raw)
    raise ValueError(f"unknown scorer {name!r}; known: {', '.join(SCORERS)}")


def scorer_from_tensors(name: str, tensors: dict[str, Any], species: list[str]) -> KNNScorer | MahalanobisScorer | OCSVMScorer:
    cls = {"knn": KNNScorer, "mahalanobis": MahalanobisScorer, "ocsvm": OCSVMScorer}[name]
    return cls.from_tensors(tensors, species)


def shared_gamma(emb: np.ndarray) -> float:
    var = float(emb.var()) if emb.shape[0] > 1 else 0.0
    return 1.0 / (emb.shape[1] * var) if var > 1e-12 else 1.0 / max(emb.shape[1], 1)


def _euclidean_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T, 0.0))


def _cosine_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cosine similarity of unit-length rows."""
    return np.maximum(1.0 - np.asarray(a, np.float32) @ np.asarray(b, np.float32).T, 0.0).astype(np.float64)


def _kth(d: np.ndarray, k: int) -> np.ndarray:
    """Per row, the k-th smallest value (k >= 1)."""
    k = max(1, min(k, d.shape[1]))
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)

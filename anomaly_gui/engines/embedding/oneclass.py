"""One-class SVMs per species, kept as plain arrays (support vectors, dual coefficients, intercept, gamma)
so they are saved in our safetensors model file and never pickled.

The decision function is rebuilt exactly as scikit-learn's RBF OneClassSVM computes it:
`f(x) = sum_i dual_coef_i * exp(-gamma * |sv_i - x|^2) + intercept` (positive = inlier).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class OneClassModel:
    """An RBF one-class SVM as arrays."""

    support_vectors: np.ndarray  # (m, d) float64
    dual_coef: np.ndarray  # (m,) float64
    intercept: float
    gamma: float
    train_scale: float = 1.0  # std of the training decision values, to compare species models

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Raw decision values (n,) as sklearn's `decision_function` (positive = fits the model)."""
        x = np.asarray(x, np.float64)
        sv = self.support_vectors
        d2 = (x * x).sum(1)[:, None] + (sv * sv).sum(1)[None, :] - 2.0 * x @ sv.T
        return np.exp(-self.gamma * np.maximum(d2, 0.0)) @ self.dual_coef + self.intercept

    def normalised(self, x: np.ndarray) -> np.ndarray:
        """Decision values divided by the model's training spread (comparable across species)."""
        return self.decision(x) / self.train_scale


def fit_oneclass(x: np.ndarray, nu: float = 0.1, gamma: float | None = None, exact: bool = False) -> OneClassModel:
    """Fit sklearn's OneClassSVM (RBF) on rows of `x` and keep its arrays.

    With a single sample a tiny cloud around it would be degenerate: the model then is that point,
    with the kernel value minus 0.5 as decision (inside about one kernel width = inlier). `exact`: as
    scikit-learn fits it, one sample included (gamma 'scale' = 1 / (dim * x.var()) when not given).
    """
    from sklearn.svm import OneClassSVM

    x = np.asarray(x, np.float64)
    if gamma is None or gamma <= 0:
        var = float(x.var()) if x.shape[0] > 1 or exact else 0.0
        gamma = 1.0 / (x.shape[1] * var) if var > 1e-12 else 1.0 / x.shape[1]
    if x.shape[0] == 1 and not exact:
        return OneClassModel(x.copy(), np.ones(1), -0.5, float(gamma), 1.0)
    svm = OneClassSVM(kernel="rbf", nu=float(min(max(nu, 1e-3), 1.0)), gamma=float(gamma)).fit(x)
    model = OneClassModel(np.asarray(svm.support_vectors_, np.float64), np.asarray(svm.dual_coef_, np.float64).ravel(),
                          float(np.ravel(svm.intercept_)[0]), float(gamma))
    spread = float(np.std(model.decision(x)))
    model.train_scale = spread if spread > 1e-9 else max(float(np.abs(model.dual_coef).sum()), 1e-9)
    return model


def models_to_tensors(models: dict[str, OneClassModel], prefix: str = "ocsvm") -> tuple[dict[str, np.ndarray], list[str]]:
    """Flatten per-species models into named arrays; the species order is returned for the metadata."""
    names = sorted(models)
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(names):
        m = models[name]
        out[f"{prefix}.{k}.support_vectors"] = m.support_vectors.astype(np.float64)
        out[f"{prefix}.{k}.dual_coef"] = m.dual_coef.astype(np.float64)
        out[f"{prefix}.{k}.params"] = np.array([m.intercept, m.gamma, m.train_scale], np.float64)
    return out, names


def models_from_tensors(tensors: dict[str, Any], names: list[str], prefix: str = "ocsvm") -> dict[str, OneClassModel]:
    """Inverse of `models_to_tensors`."""
    out: dict[str, OneClassModel] = {}
    for k, name in enumerate(names):
        p = _np(tensors[f"{prefix}.{k}.params"])
        out[name] = OneClassModel(_np(tensors[f"{prefix}.{k}.support_vectors"]), _np(tensors[f"{prefix}.{k}.dual_coef"]),
                                  float(p[0]), float(p[1]), float(p[2]))
    return out


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)

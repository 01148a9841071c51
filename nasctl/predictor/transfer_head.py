"""The head of a few-shot transfer (:mod:`nasctl.predictor.transfer`): a ridge regression of the
new device's log latency on the source devices' predicted log latencies, its leave-one-out errors,
the leave-source-out scores that calibrate its intervals, and the D-optimal choice of what to
measure first."""

from __future__ import annotations

from typing import Any

import numpy as np

RIDGE = 1.0  # ridge weight of the informative design (the head chooses its own from LAMBDAS)
LAMBDAS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # ridge weights the head chooses from (LOO)
SCALE_FLOOR = 0.01  # log units: a fit is never trusted beyond about 1 %
LSO_DRAWS = 20  # few-shot fits per left-out source device (interval calibration)
LSO_ROWS = 600  # rows of a left-out source scored per draw


def _design(S: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(S)), (S - mean) / std])


def _loo_signed(X: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Exact leave-one-out residuals (prediction - truth) of ridge (unpenalized intercept,
    column 0 of ``X``) through its hat matrix."""
    P = lam * np.eye(X.shape[1])
    P[0, 0] = 0.0
    H = X @ np.linalg.solve(X.T @ X + P, X.T)
    return (H @ y - y) / np.maximum(1.0 - np.diag(H), 1e-9)


def _loo_abs(X: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    return np.abs(_loo_signed(X, y, lam))


def choose_lambda(S: np.ndarray, y_log: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """The ridge weight of ``LAMBDAS`` with the least mean squared leave-one-out error."""
    X = _design(S, mean, std)
    errs = [float(np.mean(_loo_abs(X, y_log, lam) ** 2)) for lam in LAMBDAS]
    return float(LAMBDAS[int(np.argmin(errs))])


def fit_head(
    S: np.ndarray,
    y_log: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    lam: float | None = None,
) -> dict[str, Any]:
    """Ridge of ``y_log`` on ``(S - mean) / std`` with an unpenalized intercept; ``lam`` None:
    chosen by leave-one-out (:func:`choose_lambda`)."""
    lam = choose_lambda(S, y_log, mean, std) if lam is None else lam
    X = _design(S, mean, std)
    P = lam * np.eye(X.shape[1])
    P[0, 0] = 0.0
    c = np.linalg.solve(X.T @ X + P, X.T @ y_log)
    return {
        "w": c[1:].tolist(),
        "b": float(c[0]),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "lambda": lam,
    }


def head_predict(h: dict[str, Any], S: np.ndarray) -> np.ndarray:
    Z = (S - np.asarray(h["mean"])) / np.asarray(h["std"])
    return Z @ np.asarray(h["w"]) + float(h["b"])


def loo_errors(
    S: np.ndarray, y_log: np.ndarray, mean: np.ndarray, std: np.ndarray, lam: float | None = None
) -> np.ndarray:
    """Absolute leave-one-out log errors of the head (weight ``lam``, None: chosen by
    leave-one-out on all rows) on these rows."""
    lam = choose_lambda(S, y_log, mean, std) if lam is None else lam
    return _loo_abs(_design(S, mean, std), y_log, lam)


def loo_residuals(
    S: np.ndarray, y_log: np.ndarray, mean: np.ndarray, std: np.ndarray, lam: float
) -> np.ndarray:
    """Leave-one-out log residuals (prediction - truth) of the head with weight ``lam``."""
    return _loo_signed(_design(S, mean, std), y_log, lam)


def loo_scale(
    S: np.ndarray, y_log: np.ndarray, mean: np.ndarray, std: np.ndarray, lam: float | None = None
) -> float:
    """Root mean square leave-one-out log error of the head on these rows (plus ``SCALE_FLOOR``):
    how well a few-shot fit explains the device, known before any other row is seen."""
    e = loo_errors(S, y_log, mean, std, lam)
    return float(np.sqrt(np.mean(e**2))) + SCALE_FLOOR


def lso_scores(
    S_src: dict[int, tuple[np.ndarray, np.ndarray]], n_rows: int, seed: int
) -> np.ndarray:
    """Normalized absolute log errors of few-shot fits on each source device left out in turn:
    ``S_src[j]`` = (predictions of every source model on rows of source ``j``, ``j``'s log
    latencies); the head sees the other sources' columns and ``n_rows`` of ``j``'s rows, and is
    scored on up to ``LSO_ROWS`` others; each error is divided by that fit's :func:`loo_scale`
    (so a device that few rows explain well gets a narrow interval, one they do not a wide one)."""
    rng = np.random.default_rng(seed + 7)
    errs: list[np.ndarray] = []
    for j, (S, y) in S_src.items():
        keep = np.arange(S.shape[1]) != j
        if len(y) <= n_rows + 1 or keep.sum() == 0:
            continue
        Sk = S[:, keep]
        mean, std = Sk.mean(0), Sk.std(0) + 1e-9
        for _ in range(LSO_DRAWS):
            perm = rng.permutation(len(y))
            tr, te = perm[:n_rows], perm[n_rows : n_rows + LSO_ROWS]
            h = fit_head(Sk[tr], y[tr], mean, std)
            scale = loo_scale(Sk[tr], y[tr], mean, std, h["lambda"])
            errs.append(np.abs(head_predict(h, Sk[te]) - y[te]) / scale)
    return np.concatenate(errs) if errs else np.zeros(0)


def informative(S: np.ndarray, n: int, lam: float = RIDGE) -> list[int]:
    """Indices of ``n`` rows of ``S`` (candidates x sources, predicted log ms) by greedy
    D-optimal design for the ridge head: each pick is the candidate whose standardized
    predictions the head is least sure of, given the picks so far."""
    Z = (S - S.mean(0)) / (S.std(0) + 1e-9)
    X = np.column_stack([np.ones(len(Z)), Z])
    M = lam * np.eye(X.shape[1])
    chosen: list[int] = []
    for _ in range(min(n, len(X))):
        Mi = np.linalg.inv(M)
        gain = np.einsum("ij,jk,ik->i", X, Mi, X)
        gain[chosen] = -np.inf
        j = int(np.argmax(gain))
        chosen.append(j)
        M += np.outer(X[j], X[j])
    return chosen

"""Repeatability over repeated injections, and how well an early change predicts response (ROC).

Repeatability (Bland & Altman, "Measurement error", BMJ 1996;312:1654; the QIBA terminology of
Raunig et al., Stat Methods Med Res 2015;24:27-67). Each *group* is one lesion at one exam measured
on n_i >= 2 clips (repeated injections), values y_ij:

- within-subject SD: ``wSD^2 = sum_i sum_j (y_ij - mean_i)^2 / sum_i (n_i - 1)``, the residual mean
  square of a one-way ANOVA by group; with the same n_i in every group it is the mean over groups of
  the within-group sample variance.
- within-subject CV (percent): ``wCV^2 = sum_i (n_i - 1) (s_i / mean_i)^2 / sum_i (n_i - 1)``, the
  root-mean-square of the groups' CVs (Bland, "How should I calculate a within-subject coefficient of
  variation?"; QIBA's wCV = sigma_w / mu); with equal n_i it is the plain root mean square. Groups whose
  mean is not positive have no CV and are left out of it. (Bland & Altman's log method, BMJ
  1996;313:106, gives nearly the same figure when errors are proportional to the mean.)
- repeatability coefficient ``RC = 2.77 wSD`` (2.77 = 1.96 sqrt 2): 95 % of differences between two
  single measurements of one lesion lie within +-RC; ``RC% = 2.77 wCV``. The difference of two
  means of n_a and n_b clips has the 95 % limit ``RC sqrt((1/n_a + 1/n_b) / 2)`` (:meth:`limit`).

ROC: the score is the change of a parameter (percent); *a fall predicts response*, so
``AUC = P(change of a responder < change of a non-responder) + P(tie) / 2``, the Mann-Whitney U of the
non-responders' changes against the responders' divided by ``n_r n_n``. The 95 % interval is the
percentile bootstrap resampling responders and non-responders separately (stratified by outcome,
so every resample has both), seeded. The Youden threshold t maximises ``J = sensitivity +
specificity - 1`` for the rule "responder when change <= t" over the observed changes (ties: the
lowest t).
"""
from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

RC_FACTOR = 2.77  # 1.96 * sqrt(2), as Bland & Altman and QIBA round it
DEFAULT_BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Repeatability:
    """Repeatability of one parameter over groups of repeated measurements (units of the values)."""

    n_groups: int
    n_measurements: int
    mean: float
    wsd: float
    wcv_percent: float | None
    rc: float
    rc_percent: float | None

    def limit(self, n_a: int = 1, n_b: int = 1) -> float:
        """95 % limit of the difference between a mean of ``n_a`` and a mean of ``n_b`` measurements."""
        return self.rc * math.sqrt((1.0 / n_a + 1.0 / n_b) / 2.0)


def repeatability(groups: Sequence[Sequence[float]]) -> Repeatability | None:
    """wSD, wCV and RC over ``groups`` (each the repeated values of one lesion at one exam).

    Groups with fewer than two finite values carry no within-group information and are skipped;
    None when no group is left.
    """
    kept = [np.asarray([v for v in g if v is not None and math.isfinite(v)], dtype=float) for g in groups]
    kept = [g for g in kept if g.size >= 2]
    if not kept:
        return None
    dof = np.array([g.size - 1 for g in kept], dtype=float)
    variances = np.array([g.var(ddof=1) for g in kept])
    wsd = float(math.sqrt(np.sum(dof * variances) / np.sum(dof)))
    means = np.array([g.mean() for g in kept])
    positive = means > 0
    wcv = None
    if positive.any():
        cv2 = variances[positive] / means[positive] ** 2
        wcv = 100.0 * float(math.sqrt(np.sum(dof[positive] * cv2) / np.sum(dof[positive])))
    return Repeatability(n_groups=len(kept), n_measurements=int(sum(g.size for g in kept)),
                         mean=float(np.concatenate(kept).mean()), wsd=wsd, wcv_percent=wcv,
                         rc=RC_FACTOR * wsd, rc_percent=RC_FACTOR * wcv if wcv is not None else None)


def roc_auc(responders: Sequence[float], non_responders: Sequence[float]) -> float:
    """AUC of "a fall predicts response" from the changes of responders and non-responders."""
    r, n = _finite(responders), _finite(non_responders)
    if r.size == 0 or n.size == 0:
        raise ValueError("the AUC needs at least one responder and one non-responder")
    return float(_auc(n, r))


def _auc(non_responders: np.ndarray, responders: np.ndarray, axis: int = -1):
    # U of the non-responders counts pairs where a non-responder's change exceeds a responder's.
    u = stats.mannwhitneyu(non_responders, responders, axis=axis, method="asymptotic").statistic
    return u / (non_responders.shape[axis] * responders.shape[axis])


def bootstrap_auc_interval(responders: Sequence[float], non_responders: Sequence[float],
                           n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES, seed: int = 0,
                           confidence_level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`roc_auc`, stratified by outcome, reproducible by ``seed``."""
    r, n = _finite(responders), _finite(non_responders)
    if r.size == 0 or n.size == 0:
        raise ValueError("the AUC needs at least one responder and one non-responder")
    seed_keyword = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    with warnings.catch_warnings():
        # A perfectly separated table gives the same AUC in every resample: a valid, degenerate interval.
        warnings.simplefilter("ignore", getattr(stats, "DegenerateDataWarning", RuntimeWarning))
        result = stats.bootstrap((n, r), _auc, n_resamples=n_resamples, method="percentile", vectorized=True,
                                 confidence_level=confidence_level, axis=-1,
                                 **{seed_keyword: np.random.default_rng(seed)})
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def youden_threshold(responders: Sequence[float], non_responders: Sequence[float]) -> tuple[float, float, float]:
    """``(threshold, sensitivity, specificity)`` of "responder when change <= threshold" maximising J."""
    r, n = _finite(responders), _finite(non_responders)
    if r.size == 0 or n.size == 0:
        raise ValueError("the Youden threshold needs at least one responder and one non-responder")
    thresholds = np.unique(np.concatenate([r, n]))
    sensitivity = (r[None, :] <= thresholds[:, None]).mean(axis=1)
    specificity = (n[None, :] > thresholds[:, None]).mean(axis=1)
    best = int(np.argmax(sensitivity + specificity - 1.0))  # the first maximum: the lowest threshold
    return float(thresholds[best]), float(sensitivity[best]), float(specificity[best])


@dataclass(frozen=True)
class RocResult:
    """ROC analysis of one change: AUC with its bootstrap interval, Youden threshold (percent)."""

    n_responders: int
    n_non_responders: int
    auc: float | None
    auc_ci_low: float | None
    auc_ci_high: float | None
    threshold: float | None
    sensitivity: float | None
    specificity: float | None
    reason: str | None = None


def roc_analysis(responders: Sequence[float], non_responders: Sequence[float],
                 n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES, seed: int = 0) -> RocResult:
    """AUC, its 95 % bootstrap interval and the Youden threshold; a reason instead when a class is empty."""
    r, n = _finite(responders), _finite(non_responders)
    if r.size == 0 or n.size == 0:
        missing = "responder" if r.size == 0 else "non-responder"
        return RocResult(int(r.size), int(n.size), None, None, None, None, None, None,
                         f"no {missing} with a defined change")
    threshold, sensitivity, specificity = youden_threshold(r, n)
    if min(r.size, n.size) < 2:
        return RocResult(int(r.size), int(n.size), roc_auc(r, n), None, None, threshold, sensitivity, specificity,
                         "no bootstrap interval with fewer than two responders or non-responders")
    low, high = bootstrap_auc_interval(r, n, n_resamples, seed)
    return RocResult(int(r.size), int(n.size), roc_auc(r, n), low, high, threshold, sensitivity, specificity)


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None], dtype=float)
    return array[np.isfinite(array)]

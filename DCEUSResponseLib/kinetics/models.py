"""Bolus models of a DCE-US time-intensity curve (TIC).

Every model describes the measured mean linear intensity (a.u.) as

    f(t) = O + e(t),    e(t) = A * shape(t - t0; p1, p2) for t > t0,  e(t) = 0 for t <= t0,

with t in seconds relative to the injection, O the baseline (a.u.), t0 the appearance time (s) and
``shape`` a probability density of the delay tau = t - t0 (1/s, unit area), so that A (a.u. * s) is
the area under the enhancement. The two shape parameters are model specific:

- ``lognormal`` (mu, sigma): 1/(sqrt(2 pi) sigma tau) exp(-(ln tau - mu)^2 / (2 sigma^2))
- ``gamma`` (alpha, beta): tau^alpha exp(-tau/beta) / (beta^(alpha+1) Gamma(alpha+1))
- ``ldrw`` (mu, lambda): e^lambda/mu sqrt(mu lambda/(2 pi tau)) exp(-lambda/2 (mu/tau + tau/mu))
- ``fpt`` (mu, lambda): e^lambda/mu sqrt(lambda/(2 pi)) (mu/tau)^(3/2) exp(-lambda/2 (mu/tau + tau/mu))

LDRW (local density random walk) and FPT (first passage time) follow Mischi et al.; FPT is the
inverse Gaussian distribution with mean mu and shape lambda*mu, and LDRW is its size-biased version
(LDRW(tau) = tau/mu * FPT(tau)). Units: mu of the lognormal is ln(seconds), sigma is dimensionless;
alpha is dimensionless, beta in seconds; mu of LDRW/FPT in seconds, lambda dimensionless.

Everything is evaluated in log space so that tau near 0, very narrow or very wide shapes and large
lambda neither overflow nor warn. Peaks, inflection points, areas and mean transit times are
analytic (or, for the inflections of LDRW/FPT, Brent roots of an analytic polynomial), which is what
:mod:`DCEUSResponseLib.parameters` builds on.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special

from DCEUSResponseLib.errors import InputError

#: Parameters as a mapping ``name -> value`` or a sequence in :attr:`BolusModel.parameter_names` order.
ParamsLike = Mapping[str, float] | Sequence[float] | np.ndarray

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class BolusModel:
    """A bolus model ``f(t) = O + A * shape(t - t0; p1, p2)``; see the module docstring.

    Subclasses implement the shape in log space and its analytic properties; the public methods
    (``curve``, ``enhancement``, ``mean_transit``, ...) take times in seconds and parameters as a
    mapping or a sequence ordered as :attr:`parameter_names`.
    """

    name: str = ""
    shape_parameter_names: tuple[str, str] = ("", "")
    description: str = ""

    # -- parameter handling -------------------------------------------------------------------
    @property
    def parameter_names(self) -> tuple[str, str, str, str, str]:
        """``("O", "A", "t0", p1, p2)``: the fixed order of parameter vectors."""
        return ("O", "A", "t0", *self.shape_parameter_names)

    def unpack(self, params: ParamsLike) -> tuple[float, float, float, float, float]:
        """``(O, A, t0, p1, p2)`` as floats from a mapping or a sequence; InputError if incomplete."""
        names = self.parameter_names
        if isinstance(params, Mapping):
            missing = [name for name in names if name not in params]
            if missing:
                raise InputError(f"{self.name} parameters lack {', '.join(missing)} (need {', '.join(names)})")
            return tuple(float(params[name]) for name in names)  # type: ignore[return-value]
        values = np.asarray(params, dtype=float).ravel()
        if values.size != len(names):
            raise InputError(f"{self.name} takes {len(names)} parameters ({', '.join(names)}), got {values.size}")
        return tuple(float(v) for v in values)  # type: ignore[return-value]

    def as_dict(self, params: ParamsLike) -> dict[str, float]:
        """Parameters as ``{name: value}`` in :attr:`parameter_names` order."""
        return dict(zip(self.parameter_names, self.unpack(params)))

    # -- shape in log space (tau > 0 only; arrays broadcast against p1, p2) --------------------------
    def log_shape(self, tau: np.ndarray, p1: ArrayLike, p2: ArrayLike) -> np.ndarray:
        """ln shape(tau) for tau > 0 (tau in s, shape in 1/s)."""
        raise NotImplementedError

    def dlog_shape_dtau(self, tau: np.ndarray, p1: ArrayLike, p2: ArrayLike) -> np.ndarray:
        """d ln shape / d tau (1/s) for tau > 0, so that d shape/d tau = shape * this."""
        raise NotImplementedError

    def dlog_shape_dparams(self, tau: np.ndarray, p1: ArrayLike, p2: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(d ln shape / d p1, d ln shape / d p2) for tau > 0."""
        raise NotImplementedError

    def shape_cdf(self, tau: np.ndarray, p1: float, p2: float) -> np.ndarray:
        """Integral of shape from 0 to tau (dimensionless, 0 for tau <= 0)."""
        raise NotImplementedError

    def shape_mean(self, p1: float, p2: float) -> float:
        """Mean delay of the shape, integral of tau * shape (s)."""
        raise NotImplementedError

    def shape_partial_mean(self, tau: ArrayLike, p1: ArrayLike, p2: ArrayLike) -> np.ndarray:
        """Integral of tau' * shape(tau') from 0 to tau (s; 0 for tau <= 0, :meth:`shape_mean` at infinity).

        The first moment of the part of the shape before tau, by quadrature; models with a closed
        form override it.
        """
        from scipy import integrate

        def one(x, a, b):
            if not x > 0:
                return 0.0
            if math.isinf(x):
                return float(self.shape_mean(a, b))
            return integrate.quad(lambda u: u * math.exp(float(self.log_shape(u, a, b))) if u > 0 else 0.0,
                                  0.0, x, limit=200)[0]

        return np.vectorize(one, otypes=[float])(tau, p1, p2)

    def shape_peak(self, p1: float, p2: float) -> float:
        """Delay tau (s) of the maximum of the shape."""
        raise NotImplementedError

    def shape_inflections(self, p1: float, p2: float) -> tuple[float, float]:
        """Delays (s) of the steepest rise and the steepest fall of the shape."""
        raise NotImplementedError

    def shape_parameters_valid(self, p1: float, p2: float) -> bool:
        """Whether (p1, p2) is inside the model's domain (finite, positive scales)."""
        return math.isfinite(p1) and math.isfinite(p2) and p2 > 0

    def shape_params_for_peak(self, tau_peak: ArrayLike, skew: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(p1, p2) of a shape peaking at delay ``tau_peak`` (s) with skewness parameter ``skew``.

        ``skew`` is the model's dimensionless shape parameter (sigma, alpha or lambda); used to
        lay out initial-value grids in terms of the observable time to peak.
        """
        raise NotImplementedError

    # -- shape on any tau --------------------------------------------------------------------------
    def shape(self, tau: ArrayLike, p1: ArrayLike, p2: ArrayLike) -> np.ndarray:
        """shape(tau) in 1/s, 0 for tau <= 0; tau, p1, p2 broadcast together."""
        tau = np.asarray(tau, dtype=float)
        positive = tau > 0
        # Evaluate at a harmless delay where tau <= 0 so the log never sees 0 or negatives.
        safe_tau = np.where(positive, tau, 1.0)
        log_values = self.log_shape(safe_tau, p1, p2)
        # Only absurd parameters (a spike narrower than 1e-300 s) exceed e^700; capping keeps exp finite.
        return np.where(positive, np.exp(np.minimum(log_values, 700.0)), 0.0)

    def shape_slope(self, tau: ArrayLike, p1: ArrayLike, p2: ArrayLike) -> np.ndarray:
        """d shape / d tau in 1/s^2, 0 for tau <= 0."""
        tau = np.asarray(tau, dtype=float)
        values = self.shape(tau, p1, p2)
        nonzero = values > 0
        safe_tau = np.where(nonzero, tau, 1.0)
        return np.where(nonzero, values * self.dlog_shape_dtau(safe_tau, p1, p2), 0.0)

    # -- public, in clip time ----------------------------------------------------------------------
    def enhancement(self, t: ArrayLike, params: ParamsLike) -> np.ndarray:
        """e(t) = A * shape(t - t0) in a.u. for times t in seconds (0 for t <= t0)."""
        _, area, t0, p1, p2 = self.unpack(params)
        return area * self.shape(np.asarray(t, dtype=float) - t0, p1, p2)

    def curve(self, t: ArrayLike, params: ParamsLike) -> np.ndarray:
        """f(t) = O + e(t) in a.u. for times t in seconds."""
        offset = self.unpack(params)[0]
        return offset + self.enhancement(t, params)

    def enhancement_slope(self, t: ArrayLike, params: ParamsLike) -> np.ndarray:
        """de/dt in a.u./s for times t in seconds."""
        _, area, t0, p1, p2 = self.unpack(params)
        return area * self.shape_slope(np.asarray(t, dtype=float) - t0, p1, p2)

    def enhancement_area(self, t_start: float, t_end: float, params: ParamsLike) -> float:
        """Integral of e(t) from t_start to t_end (a.u. * s), analytic."""
        _, area, t0, p1, p2 = self.unpack(params)
        cdf = self.shape_cdf(np.array([t_start - t0, t_end - t0], dtype=float), p1, p2)
        return float(area * (cdf[1] - cdf[0]))

    def mean_transit(self, params: ParamsLike) -> float:
        """First moment of e(t) about t = 0 divided by its area, in seconds: t0 + mean delay."""
        _, _, t0, p1, p2 = self.unpack(params)
        return t0 + self.shape_mean(p1, p2)

    def peak_time(self, params: ParamsLike) -> float:
        """Time (s) of the maximum of e(t)."""
        _, _, t0, p1, p2 = self.unpack(params)
        return t0 + self.shape_peak(p1, p2)

    def tangent(self, tau: float, p1: float, p2: float) -> tuple[float, float]:
        """Tangent of the shape at delay tau > 0 (s): (slope in 1/s^2, delay in s where it crosses 0)."""
        log_rate = float(self.dlog_shape_dtau(tau, p1, p2))
        slope = math.exp(float(self.log_shape(tau, p1, p2))) * log_rate
        # shape + slope * (x - tau) = 0  <=>  x = tau - shape/slope = tau - 1/(d ln shape/d tau)
        return slope, tau - 1.0 / log_rate

    def jacobian(self, t: ArrayLike, params: ParamsLike) -> np.ndarray:
        """d f / d (O, A, t0, p1, p2) at times t (s): array (len(t), 5), analytic."""
        _, area, t0, p1, p2 = self.unpack(params)
        tau = np.asarray(t, dtype=float) - t0
        values = self.shape(tau, p1, p2)
        nonzero = values > 0
        safe_tau = np.where(nonzero, tau, 1.0)
        d_tau = self.dlog_shape_dtau(safe_tau, p1, p2)
        d_p1, d_p2 = self.dlog_shape_dparams(safe_tau, p1, p2)
        jac = np.empty((tau.size, 5))
        jac[:, 0] = 1.0
        jac[:, 1] = values
        jac[:, 2] = np.where(nonzero, -area * values * d_tau, 0.0)
        jac[:, 3] = np.where(nonzero, area * values * d_p1, 0.0)
        jac[:, 4] = np.where(nonzero, area * values * d_p2, 0.0)
        return jac

    def __repr__(self) -> str:
        return f"<BolusModel {self.name}: {', '.join(self.parameter_names)}>"


class LognormalModel(BolusModel):
    """Lognormal bolus: ln(t - t0) is normal with mean mu (ln s) and standard deviation sigma."""

    name = "lognormal"
    shape_parameter_names = ("mu", "sigma")
    description = "lognormal: A/(sqrt(2 pi) sigma tau) exp(-(ln tau - mu)^2/(2 sigma^2))"

    def log_shape(self, tau, mu, sigma):
        log_tau = np.log(tau)
        return -_LOG_SQRT_2PI - np.log(sigma) - log_tau - (log_tau - mu) ** 2 / (2.0 * sigma**2)

    def dlog_shape_dtau(self, tau, mu, sigma):
        return -(1.0 + (np.log(tau) - mu) / sigma**2) / tau

    def dlog_shape_dparams(self, tau, mu, sigma):
        z = np.log(tau) - mu
        return z / sigma**2, -1.0 / sigma + z**2 / sigma**3

    def shape_cdf(self, tau, mu, sigma):
        tau = np.asarray(tau, dtype=float)
        positive = tau > 0
        z = (np.log(np.where(positive, tau, 1.0)) - mu) / sigma
        return np.where(positive, special.ndtr(z), 0.0)

    def shape_mean(self, mu, sigma):
        return math.exp(mu + 0.5 * sigma**2)

    def shape_partial_mean(self, tau, mu, sigma):
        # tau * lognormal(mu, sigma) is exp(mu + sigma^2/2) times lognormal(mu + sigma^2, sigma).
        tau = np.asarray(tau, dtype=float)
        positive = tau > 0
        z = (np.log(np.where(positive, tau, 1.0)) - mu - sigma**2) / sigma
        return np.where(positive, np.exp(mu + 0.5 * sigma**2) * special.ndtr(z), 0.0)

    def shape_peak(self, mu, sigma):
        return math.exp(mu - sigma**2)

    def shape_inflections(self, mu, sigma):
        # With u = ln tau and h = d ln shape / d u = -1 - (u - mu)/sigma^2, shape'' = 0 reduces to
        # h^2 - h - 1/sigma^2 = 0: the larger root is the rising inflection, the smaller the falling one.
        root = math.sqrt(1.0 + 4.0 / sigma**2)
        h_rise, h_fall = 0.5 * (1.0 + root), 0.5 * (1.0 - root)
        return math.exp(mu - sigma**2 * (1.0 + h_rise)), math.exp(mu - sigma**2 * (1.0 + h_fall))

    def shape_params_for_peak(self, tau_peak, skew):
        return np.log(tau_peak) + np.asarray(skew) ** 2, skew


class GammaVariateModel(BolusModel):
    """Gamma variate bolus with dimensionless alpha and time scale beta (s)."""

    name = "gamma"
    shape_parameter_names = ("alpha", "beta")
    description = "gamma variate: A tau^alpha exp(-tau/beta) / (beta^(alpha+1) Gamma(alpha+1))"

    def log_shape(self, tau, alpha, beta):
        return alpha * np.log(tau) - tau / beta - (alpha + 1.0) * np.log(beta) - special.gammaln(alpha + 1.0)

    def dlog_shape_dtau(self, tau, alpha, beta):
        return alpha / tau - 1.0 / beta

    def dlog_shape_dparams(self, tau, alpha, beta):
        return (np.log(tau) - np.log(beta) - special.digamma(alpha + 1.0),
                tau / beta**2 - (alpha + 1.0) / beta)

    def shape_cdf(self, tau, alpha, beta):
        tau = np.asarray(tau, dtype=float)
        return special.gammainc(alpha + 1.0, np.maximum(tau, 0.0) / beta)

    def shape_mean(self, alpha, beta):
        return beta * (alpha + 1.0)

    def shape_partial_mean(self, tau, alpha, beta):
        # tau * Gamma(alpha + 1, beta) density is beta (alpha + 1) times the Gamma(alpha + 2, beta) density.
        tau = np.asarray(tau, dtype=float)
        return beta * (alpha + 1.0) * special.gammainc(alpha + 2.0, np.maximum(tau, 0.0) / beta)

    def shape_peak(self, alpha, beta):
        return alpha * beta

    def shape_inflections(self, alpha, beta):
        # shape'' = 0 where (alpha - tau/beta)^2 = alpha. For alpha <= 1 the steepest rise is at
        # tau -> 0 (finite for alpha = 1, infinite below), reported as tau = 0.
        root = math.sqrt(alpha)
        return max(beta * (alpha - root), 0.0), beta * (alpha + root)

    def shape_parameters_valid(self, alpha, beta):
        return math.isfinite(alpha) and math.isfinite(beta) and alpha > 0 and beta > 0

    def tangent(self, tau, alpha, beta):
        if tau > 0:
            return super().tangent(tau, alpha, beta)
        # alpha <= 1: the steepest rise is at t0 itself, finite (1/beta^2) only for alpha = 1.
        return (1.0 / beta**2 if alpha == 1.0 else math.inf), 0.0

    def shape_params_for_peak(self, tau_peak, skew):
        skew = np.asarray(skew)
        return skew, np.asarray(tau_peak) / skew


class _InverseGaussianFamily(BolusModel):
    """Common algebra of LDRW and FPT: ln shape = c + p ln tau - lambda (tau - mu)^2 / (2 mu tau)."""

    shape_parameter_names = ("mu", "lambda")
    _power: float = 0.0  # exponent p of tau: -1/2 for LDRW, -3/2 for FPT

    def _log_constant(self, mu, lam):
        raise NotImplementedError

    def shape_parameters_valid(self, mu, lam):
        return math.isfinite(mu) and math.isfinite(lam) and mu > 0 and lam > 0

    def log_shape(self, tau, mu, lam):
        # lambda - lambda/2 (mu/tau + tau/mu) = -lambda (tau - mu)^2 / (2 mu tau): no e^lambda overflow.
        return (self._log_constant(mu, lam) + self._power * np.log(tau)
                - lam * (tau - mu) ** 2 / (2.0 * mu * tau))

    def dlog_shape_dtau(self, tau, mu, lam):
        return self._power / tau + lam * mu / (2.0 * tau**2) - lam / (2.0 * mu)

    def dlog_shape_dparams(self, tau, mu, lam):
        # c = -(p + 1) ln mu + ln(lambda)/2 + const for both members of the family.
        d_mu = -(self._power + 1.0) / mu - lam / (2.0 * tau) + lam * tau / (2.0 * mu**2)
        d_lam = 0.5 / lam - (tau - mu) ** 2 / (2.0 * mu * tau)
        return d_mu, d_lam

    def _cdf_terms(self, tau, mu, lam):
        """Phi(a) and exp(2 lambda) Phi(-b) of the inverse Gaussian CDF (shape parameter lambda*mu)."""
        tau = np.asarray(tau, dtype=float)
        positive = tau > 0
        safe_tau = np.where(positive, tau, 1.0)
        root = np.sqrt(lam * mu / safe_tau)
        term_a = special.ndtr(root * (safe_tau / mu - 1.0))
        # exp(2 lambda) overflows for large lambda; its product with Phi(-b) never exceeds 1.
        term_b = np.exp(2.0 * lam + special.log_ndtr(-root * (safe_tau / mu + 1.0)))
        return positive, term_a, term_b

    def shape_peak(self, mu, lam):
        # Root of p tau + lambda mu/2 - lambda tau^2/(2 mu) = 0, written without cancellation.
        p = self._power
        return mu * lam / (math.sqrt(p * p + lam * lam) - p)

    def shape_params_for_peak(self, tau_peak, skew):
        p = self._power
        lam = np.asarray(skew, dtype=float)
        return np.asarray(tau_peak) * (np.sqrt(p * p + lam * lam) - p) / lam, lam

    def shape_inflections(self, mu, lam):
        # shape'' = shape (g^2 + g') with g = d ln shape / d tau. In x = tau/mu, x^2 mu^2 (g^2 + g') is
        # the quartic Q(x) = (p x + lambda/2 - lambda x^2/2)^2 - p x^2 - lambda x, positive at 0 and
        # at infinity and negative at the peak, so each inflection has a sign-change bracket.
        p = self._power

        def quartic(x: float) -> float:
            return (p * x + 0.5 * lam - 0.5 * lam * x * x) ** 2 - p * x * x - lam * x

        x_peak = self.shape_peak(mu, lam) / mu
        x_high = 2.0 * x_peak + 1.0
        while quartic(x_high) <= 0.0:
            x_high *= 2.0
        tolerance = dict(xtol=1e-15 * x_peak, rtol=1e-15, maxiter=200)
        x_rise = optimize.brentq(quartic, 0.0, x_peak, **tolerance)
        x_fall = optimize.brentq(quartic, x_peak, x_high, **tolerance)
        return mu * x_rise, mu * x_fall


class LDRWModel(_InverseGaussianFamily):
    """Local density random walk (Mischi et al.): mu (s) and dimensionless lambda."""

    name = "ldrw"
    description = "LDRW: A e^lambda/mu sqrt(mu lambda/(2 pi tau)) exp(-lambda/2 (mu/tau + tau/mu))"
    _power = -0.5

    def _log_constant(self, mu, lam):
        return -0.5 * np.log(mu) + 0.5 * np.log(lam) - _LOG_SQRT_2PI

    def shape_cdf(self, tau, mu, lam):
        # LDRW is the size-biased inverse Gaussian; its CDF is Phi(a) - exp(2 lambda) Phi(-b).
        positive, term_a, term_b = self._cdf_terms(tau, mu, lam)
        return np.where(positive, np.clip(term_a - term_b, 0.0, 1.0), 0.0)

    def shape_mean(self, mu, lam):
        return mu * (1.0 + 1.0 / lam)


class FPTModel(_InverseGaussianFamily):
    """First passage time (inverse Gaussian, Mischi et al.): mu (s) and dimensionless lambda."""

    name = "fpt"
    description = ("FPT: A e^lambda/mu sqrt(lambda/(2 pi)) (mu/tau)^(3/2) "
                   "exp(-lambda/2 (mu/tau + tau/mu))")
    _power = -1.5

    def _log_constant(self, mu, lam):
        return 0.5 * np.log(mu) + 0.5 * np.log(lam) - _LOG_SQRT_2PI

    def shape_cdf(self, tau, mu, lam):
        positive, term_a, term_b = self._cdf_terms(tau, mu, lam)
        return np.where(positive, np.clip(term_a + term_b, 0.0, 1.0), 0.0)

    def shape_mean(self, mu, lam):
        return float(mu)

    def shape_partial_mean(self, tau, mu, lam):
        # tau * FPT(tau) = mu * LDRW(tau) (the size-biased distribution), so the partial first moment
        # is mu times the LDRW cumulative distribution.
        tau = np.asarray(tau, dtype=float)
        finite = np.where(np.isfinite(tau), tau, 0.0)
        positive, term_a, term_b = self._cdf_terms(finite, mu, lam)
        partial = np.where(positive, mu * np.clip(term_a - term_b, 0.0, 1.0), 0.0)
        return np.where(tau == np.inf, mu, partial)


#: All bolus models by name; "lognormal" is the default everywhere.
BOLUS_MODELS: dict[str, BolusModel] = {
    model.name: model for model in (LognormalModel(), GammaVariateModel(), LDRWModel(), FPTModel())
}

DEFAULT_MODEL = "lognormal"


def get_model(name: str | BolusModel) -> BolusModel:
    """The bolus model called ``name`` (case-insensitive); a model passed in is returned as is.

    Raises InputError naming the valid models for an unknown name.
    """
    if isinstance(name, BolusModel):
        return name
    key = str(name).strip().lower()
    if key not in BOLUS_MODELS:
        raise InputError(f"unknown bolus model {name!r}; valid models: {', '.join(BOLUS_MODELS)}")
    return BOLUS_MODELS[key]

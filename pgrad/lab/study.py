"""The estimator study: bias (with a confidence interval) and variance of every gradient estimator
against the exact gradient, and how both scale with the horizon T and the sample count m."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from pgrad.config import _is_int, in_range, one_of, positive_int, require
from pgrad.lab.exact import policy_gradient, softmax_policy
from pgrad.lab.gradient_estimators import Estimator, Setting, catalogue, exact_critic, fitted_critic
from pgrad.lab.mdps import MDPS, make_mdp
from pgrad.lab.sampling import Trajectories, per_trajectory_gradients, sample


@dataclass(frozen=True)
class StudyConfig:
    mdp: str = "chain"
    horizons: tuple[int, ...] = (5, 10, 20, 40)
    samples: int = 2000  # m: trajectories per estimate
    seed: int = 0
    gamma: float = 1.0  # the objective's discount
    discount: float = 0.9  # γ' of the "discounted" estimators
    lambdas: tuple[float, ...] = (0.0, 0.5, 0.9, 0.95, 1.0)
    n_steps: tuple[int, ...] = (1, 3, 10)
    fit_samples: int = 500  # independent trajectories the fitted critic is estimated from
    theta_scale: float = 0.5  # θ ~ N(0, scale²): the policy the gradient is taken at
    old_shift: float = 0.3  # θ_old = θ + N(0, shift²): the behaviour policy of the IS estimators
    bootstrap: int = 200  # resamples for the bias confidence interval
    confidence: float = 0.99

    def __post_init__(self) -> None:
        one_of("mdp", self.mdp, tuple(MDPS))
        require("horizons", list(self.horizons), bool(self.horizons) and all(_is_int(T) and T >= 1 for T in self.horizons),
                "give one or more integers >= 1")  # fmt: skip
        require("samples", self.samples, _is_int(self.samples) and self.samples >= 20, "must be an integer >= 20")
        in_range("gamma", self.gamma, 0.0, 1.0, low_open=True)
        in_range("discount", self.discount, 0.0, 1.0, low_open=True)
        require("lambdas", list(self.lambdas), all(0.0 <= lam <= 1.0 for lam in self.lambdas), "each must be in [0, 1]")
        require("n_steps", list(self.n_steps), all(_is_int(n) and n >= 1 for n in self.n_steps), "each must be >= 1")
        positive_int("fit_samples", self.fit_samples)
        require(
            "bootstrap", self.bootstrap, _is_int(self.bootstrap) and self.bootstrap >= 10, "must be an integer >= 10"
        )
        in_range("confidence", self.confidence, 0.5, 1.0, low_open=True, high_open=True)


@dataclass
class Summary:
    """One estimator at one horizon, from ``m`` per-trajectory gradients."""

    T: int
    bias: float  # √max(0, ‖ḡ − ∇J‖² − tr Σ̂ / m): the noise-corrected bias norm
    bias_ci: tuple[float, float]  # bootstrap percentile interval of that quantity
    error: float  # ‖ḡ − ∇J‖ as measured
    noise_floor: float  # √(tr Σ̂ / m): what ‖ḡ − ∇J‖ is expected to be with no bias at all
    variance: float  # tr Σ̂: total variance of one trajectory's gradient
    within_ci: bool  # every coordinate of ḡ within its Bonferroni-corrected CI of ∇J


def _normal_quantile(p: float) -> float:
    return math.sqrt(2.0) * torch.special.erfinv(torch.tensor(2.0 * p - 1.0, dtype=torch.float64)).item()


def summarize(
    G: Tensor, target: Tensor, T: int, confidence: float, resamples: int, generator: torch.Generator
) -> Summary:
    """Bias, its confidence interval, and variance of the mean of ``G`` ``[m, d]`` as an estimate of ``target``."""
    m, d = G.shape
    mean, var = G.mean(0), G.var(0)
    diff = mean - target
    variance = var.sum().item()
    # E‖ḡ − ∇J‖² = ‖bias‖² + tr Σ / m, so ‖ḡ − ∇J‖² − tr Σ̂ / m estimates ‖bias‖² without the noise
    bias_sq = diff.square().sum().item() - variance / m
    # Per coordinate: |ḡ_j − ∇J_j| ≤ z se_j with z Bonferroni-corrected over the d coordinates
    z = _normal_quantile(1.0 - (1.0 - confidence) / (2 * d))
    within = bool((diff.abs() <= z * (var / m).sqrt() + 1e-9 * (1.0 + target.abs())).all())
    # Bootstrap (multinomial resampling counts) of the noise-corrected bias norm
    idx = torch.randint(m, (resamples, m), generator=generator)
    counts = torch.zeros(resamples, m, dtype=G.dtype).scatter_add_(1, idx, torch.ones(resamples, m, dtype=G.dtype))
    means = counts @ G / m
    variances = (counts @ G.square() / m - means.square()) * m / (m - 1)
    boot = ((means - target).square().sum(1) - variances.sum(1) / m).clamp(min=0).sqrt()
    lo, hi = torch.quantile(boot, torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=G.dtype)).tolist()
    return Summary(
        T, math.sqrt(max(bias_sq, 0.0)), (lo, hi), diff.norm().item(), math.sqrt(variance / m), variance, within
    )


def loglog_slope(x: list[float], y: list[float]) -> float | None:
    """Least-squares slope of log y on log x (None with fewer than two usable points).

    Points with ``y`` at round-off level (≤ 1e-12 of the largest) are left out: a variance that is
    exactly zero in theory (no reward reachable yet) has no logarithm worth fitting.
    """
    floor = 1e-12 * max(y, default=0.0)
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y, strict=True) if a > 0 and b > floor and b > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None


@dataclass
class EstimatorResult:
    name: str
    family: str
    unbiased_by_theory: bool
    per_horizon: list[Summary] = field(default_factory=list)
    variance_slope_T: float | None = None
    mse_samples: list[int] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    mse_slope_m: float | None = None


@dataclass
class StudyResult:
    config: StudyConfig
    theta: list[list[float]]
    exact_gradient_norm: dict[int, float]
    estimators: list[EstimatorResult]

    def to_json(self) -> dict:
        return asdict(self)


def _gradients(est: Estimator, data: dict[str, Trajectories], st: Setting) -> Tensor:
    traj = data[est.behaviour]
    pi = st.pi
    return per_trajectory_gradients(traj, pi, est.weights(traj, st)).reshape(traj.m, -1)


def run_study(cfg: StudyConfig, progress=None) -> StudyResult:
    g = torch.Generator().manual_seed(cfg.seed)
    base = make_mdp(cfg.mdp, horizon=max(cfg.horizons), gamma=cfg.gamma, seed=cfg.seed)
    theta = cfg.theta_scale * torch.randn(base.n_states, base.n_actions, dtype=torch.float64, generator=g)
    theta_old = theta + cfg.old_shift * torch.randn(theta.shape, dtype=torch.float64, generator=g)
    pi, pi_old = softmax_policy(theta), softmax_policy(theta_old)
    items = catalogue(cfg.lambdas, cfg.n_steps, cfg.discount)
    results = [EstimatorResult(e.name, e.family, e.unbiased) for e in items]
    norms: dict[int, float] = {}
    horizons = sorted(cfg.horizons)
    for T in horizons:
        mdp = base.replace(horizon=T)
        targets = {
            False: policy_gradient(mdp, theta).reshape(-1),
            True: policy_gradient(mdp.replace(gamma=cfg.discount), theta).reshape(-1),
        }
        norms[T] = targets[False].norm().item()
        data = {"current": sample(mdp, pi, cfg.samples, g), "old": sample(mdp, pi_old, cfg.samples, g)}
        st = Setting(
            mdp,
            pi,
            pi_old,
            exact_critic(mdp, pi),
            fitted_critic(mdp, sample(mdp, pi, cfg.fit_samples, g)),
            cfg.discount,
        )
        for est, res in zip(items, results, strict=True):
            G = _gradients(est, data, st)
            res.per_horizon.append(summarize(G, targets[est.own_discount], T, cfg.confidence, cfg.bootstrap, g))
        if T == horizons[-1]:  # scaling with m, at the longest horizon: MSE of the batch mean over disjoint chunks
            sizes = sorted(
                {k for k in (cfg.samples // 100, cfg.samples // 30, cfg.samples // 10, cfg.samples // 3) if k >= 2}
            )
            for est, res in zip(items, results, strict=True):
                res.mse_samples = sizes
                for k in sizes:
                    errors = []
                    for c in range(cfg.samples // k):
                        part = {name: traj[c * k : (c + 1) * k] for name, traj in data.items()}
                        mean = _gradients(est, part, st).mean(0)
                        errors.append((mean - targets[est.own_discount]).square().sum().item())
                    res.mse.append(sum(errors) / len(errors))
                res.mse_slope_m = loglog_slope([float(k) for k in sizes], res.mse)
        if progress is not None:
            progress(T)
    for res in results:
        res.variance_slope_T = loglog_slope(
            [float(s.T) for s in res.per_horizon], [s.variance for s in res.per_horizon]
        )
    return StudyResult(cfg, theta.tolist(), norms, results)


def write_study(result: StudyResult, out: Path) -> list[Path]:
    """``variance.json`` and three figures under ``out``; returns the paths written."""
    from pgrad.checkpoint import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "variance.json"]
    atomic_write(paths[0], json.dumps(result.to_json(), indent=1).encode())
    paths += plot_study(result, out)
    return paths


def plot_study(result: StudyResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result.config
    by_family: dict[str, list[EstimatorResult]] = {}
    for res in result.estimators:
        by_family.setdefault(res.family, []).append(res)
    paths = []

    def slope(value: float | None) -> str:
        return f" (slope {value:.2f})" if value is not None else ""

    def loglog(curves: list[tuple[str, list, list]], xlabel: str, ylabel: str, title: str, name: str) -> None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, xs, ys in curves:
            ax.plot(xs, ys, marker="o", label=label)
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    importance = [r for r in result.estimators if r.name.startswith("importance")]
    loglog(
        [
            (r.name + slope(r.variance_slope_T), [s.T for s in r.per_horizon], [s.variance for s in r.per_horizon])
            for r in by_family["core"] + importance
        ],
        "horizon T",
        "tr Cov[ĝ] (one trajectory)",
        f"Gradient variance vs horizon — {cfg.mdp}, m={cfg.samples}, seed {cfg.seed}",
        "variance_vs_horizon.png",
    )

    T = max(cfg.horizons)
    fig, (ax_b, ax_v) = plt.subplots(1, 2, figsize=(10, 4))
    for family, label in (("gae_fitted", "fitted (stationary) V"), ("gae_exact", "exact V")):
        members = by_family.get(family, [])
        lams = list(cfg.lambdas)
        bias = [r.per_horizon[-1].bias for r in members]
        lo = [r.per_horizon[-1].bias_ci[0] for r in members]
        hi = [r.per_horizon[-1].bias_ci[1] for r in members]
        line = ax_b.plot(lams, bias, marker="o", label=label)[0]
        ax_b.fill_between(lams, lo, hi, alpha=0.2, color=line.get_color())
        ax_v.plot(lams, [r.per_horizon[-1].variance for r in members], marker="o", label=label)
    ax_b.set(xlabel="λ", ylabel="bias ‖E ĝ − ∇J‖ (noise-corrected, CI band)", title=f"GAE(λ) bias, T={T}")
    ax_v.set(xlabel="λ", ylabel="tr Cov[ĝ]", yscale="log", title=f"GAE(λ) variance, T={T}")
    ax_b.legend()
    ax_v.legend()
    fig.tight_layout()
    paths.append(out / "gae_lambda.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    loglog(
        [
            (r.name + slope(r.mse_slope_m), r.mse_samples, r.mse)
            for r in by_family["core"] + by_family.get("n_step", [])
        ],
        "trajectories m",
        "E‖ḡ − ∇J‖²",
        f"Mean squared error vs samples — {cfg.mdp}, T={T}",
        "mse_vs_samples.png",
    )
    return paths

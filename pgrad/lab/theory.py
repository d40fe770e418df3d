"""The notes' exact claims, checked on tabular MDPs: each check returns what it measured and
whether the claim held.

- the policy gradient theorem: ∇J from the theorem = autograd through J = finite differences;
- the performance-difference identity J(θ') − J(θ) = E_{τ~θ'}[Σ_t γ^t A^{π_θ}(s_t, a_t)];
- the surrogate's error when states come from p_θ instead of p_θ' against the notes' 2εt bound;
- KL(π_θ' ‖ π_θ) against ½ Δθᵀ F Δθ as the step grows;
- soft policy iteration: Q^{π_new} ≥ Q^{π_old} at every iteration, converging to the soft optimum.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from pgrad.config import in_range, one_of, positive, positive_int
from pgrad.lab.exact import (
    autograd_gradient,
    evaluate,
    finite_difference_gradient,
    fisher_matrix,
    mean_kl,
    policy_gradient,
    soft_evaluate,
    soft_optimal_q,
    softmax_policy,
)
from pgrad.lab.mdps import MDPS, TabularMDP, make_mdp
from pgrad.lab.study import loglog_slope


@dataclass
class Claim:
    name: str
    statement: str
    holds: bool
    measured: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)  # curves behind the figures

    def headline(self) -> str:
        return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.measured.items())


def _random_theta(mdp: TabularMDP, scale: float, g: torch.Generator) -> Tensor:
    return scale * torch.randn(mdp.n_states, mdp.n_actions, dtype=torch.float64, generator=g)


def check_policy_gradient_theorem(mdps: list[TabularMDP], theta: Tensor) -> Claim:
    errors_ad, errors_fd, scale = [], [], 0.0
    for mdp in mdps:
        exact = policy_gradient(mdp, theta)
        errors_ad.append((exact - autograd_gradient(mdp, theta)).abs().max().item())
        errors_fd.append((exact - finite_difference_gradient(mdp, theta)).abs().max().item())
        scale = max(scale, exact.abs().max().item())
    ad, fd = max(errors_ad), max(errors_fd)
    return Claim(
        "policy gradient theorem",
        "Σ_t γ^t Σ_s p_t(s) Σ_a π ∇log π Q_t = autograd ∇J = finite differences (finite and infinite horizon)",
        ad <= 1e-10 * (1 + scale) and fd <= 1e-6 * (1 + scale),
        {"max |theorem − autograd|": ad, "max |theorem − finite diff|": fd, "max |∇J|": scale},
    )


def performance_difference(mdp: TabularMDP, theta: Tensor, theta_new: Tensor) -> tuple[float, float]:
    """``(J(θ') − J(θ), Σ_t Σ_s γ^t p'_t(s) Σ_a π'(a|s) A^π_t(s, a))``: both sides, exactly."""
    pi, pi_new = softmax_policy(theta), softmax_policy(theta_new)
    old, new = evaluate(mdp, pi), evaluate(mdp, pi_new)
    # J(θ') − J(θ) = E_{τ~p_θ'}[Σ_t γ^t A^{π_θ}(s_t, a_t)]
    rhs = (new.occupancy.unsqueeze(-1) * pi_new * old.advantages).sum()
    return (new.J - old.J).item(), rhs.item()


def check_performance_difference(mdps: list[TabularMDP], theta: Tensor, g: torch.Generator) -> Claim:
    worst, scale = 0.0, 0.0
    for mdp in mdps:
        for _ in range(5):
            theta_new = theta + torch.randn(theta.shape, dtype=torch.float64, generator=g)
            lhs, rhs = performance_difference(mdp, theta, theta_new)
            worst, scale = max(worst, abs(lhs - rhs)), max(scale, abs(lhs))
    return Claim(
        "performance difference",
        "J(θ') − J(θ) = E_{τ~θ'}[Σ_t γ^t A^{π_θ}(s_t, a_t)] for random θ' (finite and infinite horizon)",
        worst <= 1e-10 * (1 + scale),
        {"max |lhs − rhs|": worst, "max |J(θ') − J(θ)|": scale},
    )


def check_surrogate(mdp: TabularMDP, theta: Tensor, direction: Tensor, steps: list[float]) -> Claim:
    """Finite horizon. For θ' = θ + s·d: ε = max_s TV(π'(·|s), π(·|s)); the state-distribution gap
    ‖p_θ'(s_t) − p_θ(s_t)‖₁ against 2(1 − (1 − ε)^t) ≤ 2εt; and the surrogate's error
    |J(θ') − J(θ) − L_θ(θ')| against Σ_t γ^t 2(1 − (1 − ε)^t) max_s |E_{a~π'} A_t(s, a)|."""
    if mdp.horizon is None:
        raise ValueError("the surrogate check needs a finite horizon")
    pi = softmax_policy(theta)
    old = evaluate(mdp, pi)
    t = torch.arange(mdp.horizon, dtype=torch.float64)
    discount = mdp.gamma**t
    eps_list, gap_ratio, errors, bounds, notes_bounds = [], [], [], [], []
    for step in steps:
        pi_new = softmax_policy(theta + step * direction)
        new = evaluate(mdp, pi_new)
        eps = 0.5 * (pi_new - pi).abs().sum(-1).max().item()
        p_old, p_new = old.occupancy / discount.unsqueeze(1), new.occupancy / discount.unsqueeze(1)
        gap = (p_new - p_old).abs().sum(-1)  # ‖p_θ'(s_t) − p_θ(s_t)‖₁ per t
        tight = 2 * (1 - (1 - eps) ** t)
        f = (pi_new * old.advantages).sum(-1)  # f_t(s) = E_{a~π'}[A_t(s, a)]
        # surrogate: L_θ(θ') = Σ_t γ^t E_{s~p_θ(s_t)} E_{a~π'}[A^π_t(s, a)]   (states from the old policy)
        surrogate = (old.occupancy * f).sum().item()
        true = (new.J - old.J).item()
        eps_list.append(eps)
        gap_ratio.append(max((gap[1:] / tight[1:].clamp(min=1e-300)).max().item(), 0.0) if mdp.horizon > 1 else 0.0)
        errors.append(abs(true - surrogate))
        bounds.append((discount * tight * f.abs().max(-1).values).sum().item())
        notes_bounds.append((discount * 2 * eps * t * f.abs().max(-1).values).sum().item())
    holds = all(r <= 1 + 1e-9 for r in gap_ratio) and all(e <= b + 1e-12 for e, b in zip(errors, bounds, strict=True))
    return Claim(
        "surrogate error",
        "|p_θ'(s_t) − p_θ(s_t)|₁ ≤ 2(1−(1−ε)^t) ≤ 2εt, and the surrogate L_θ(θ') (states from p_θ) is within the bound it implies",
        holds,
        {
            "max gap / 2(1−(1−ε)^t)": max(gap_ratio),
            "max error / bound": max(e / b for e, b in zip(errors, bounds, strict=True) if b > 0),
            "error slope vs ε": loglog_slope(eps_list, errors) or float("nan"),
        },
        {"epsilon": eps_list, "error": errors, "bound": bounds, "notes_bound_2et": notes_bounds},
    )


def check_kl_quadratic(mdp: TabularMDP, theta: Tensor, direction: Tensor, steps: list[float]) -> Claim:
    F = fisher_matrix(mdp, theta)
    kls, quads = [], []
    for step in steps:
        delta = step * direction.reshape(-1)
        kls.append(mean_kl(mdp, theta + step * direction, theta).item())
        quads.append(0.5 * (delta @ F @ delta).item())  # KL(π_θ' ‖ π_θ) ≈ ½ Δθᵀ F Δθ
    gaps = [abs(k - q) for k, q in zip(kls, quads, strict=True)]
    ratio_small = kls[0] / quads[0]
    return Claim(
        "KL ≈ ½ΔθᵀFΔθ",
        "E_s KL(π_θ' ‖ π_θ) / ½ΔθᵀFΔθ → 1 as the step shrinks, the gap shrinking like step³",
        abs(ratio_small - 1) < 1e-2 and (loglog_slope(steps, gaps) or 0) > 2.5,
        {
            "ratio at smallest step": ratio_small,
            "ratio at largest step": kls[-1] / quads[-1],
            "gap slope vs step": loglog_slope(steps, gaps) or float("nan"),
        },
        {"step": steps, "kl": kls, "quadratic": quads},
    )


def check_soft_policy_iteration(mdp: TabularMDP, alpha: float, iterations: int = 30) -> Claim:
    if mdp.horizon is not None:
        mdp = mdp.replace(horizon=None, gamma=min(mdp.gamma, 0.95))
    Q_star = soft_optimal_q(mdp, alpha)
    pi = torch.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions, dtype=torch.float64)
    Q, _ = soft_evaluate(mdp, pi, alpha)
    min_improvements, gaps = [], [(Q - Q_star).abs().max().item()]
    for _ in range(iterations):
        pi = torch.softmax(Q / alpha, dim=-1)  # soft improvement: π_new(a|s) ∝ exp(Q^{π_old}(s, a) / α)
        Q_new, _ = soft_evaluate(mdp, pi, alpha)
        min_improvements.append((Q_new - Q).min().item())  # soft policy improvement: Q^{π_new} ≥ Q^{π_old}
        gaps.append((Q_new - Q_star).abs().max().item())
        Q = Q_new
    scale = Q_star.abs().max().item()
    return Claim(
        "soft policy iteration",
        f"Q^(π_new) ≥ Q^(π_old) at every iteration and Q → Q*_soft (α = {alpha:g}, γ = {mdp.gamma:g})",
        min(min_improvements) >= -1e-10 * (1 + scale) and gaps[-1] <= 1e-8 * (1 + scale),
        {"min over iterations of min(Q_new − Q_old)": min(min_improvements), "final ‖Q − Q*‖∞": gaps[-1]},
        {"gap": gaps, "min_improvement": min_improvements},
    )


@dataclass(frozen=True)
class TheoryConfig:
    mdp: str = "random"
    seed: int = 0
    horizon: int = 20
    gamma: float = 0.95
    alpha: float = 0.5  # soft policy iteration's temperature

    def __post_init__(self) -> None:
        one_of("mdp", self.mdp, tuple(MDPS))
        positive_int("horizon", self.horizon)
        in_range("gamma", self.gamma, 0.0, 1.0, low_open=True, high_open=True)  # the infinite-horizon checks
        positive("alpha", self.alpha)


def run_theory(cfg: TheoryConfig) -> list[Claim]:
    g = torch.Generator().manual_seed(cfg.seed)
    finite = make_mdp(cfg.mdp, horizon=cfg.horizon, gamma=cfg.gamma, seed=cfg.seed)
    infinite = finite.replace(horizon=None)
    theta = _random_theta(finite, 0.5, g)
    direction = torch.randn(theta.shape, dtype=torch.float64, generator=g)
    direction = direction / direction.norm()
    steps = [float(s) for s in torch.logspace(-3, 0.5, 15, dtype=torch.float64)]
    return [
        check_policy_gradient_theorem([finite, infinite], theta),
        check_performance_difference([finite, infinite], theta, g),
        check_surrogate(finite, theta, direction, steps),
        check_kl_quadratic(infinite, theta, direction, steps),
        check_soft_policy_iteration(infinite, cfg.alpha),
    ]


def write_theory(cfg: TheoryConfig, claims: list[Claim], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pgrad.checkpoint import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "theory.json"]
    atomic_write(
        paths[0], json.dumps({"config": asdict(cfg), "claims": [asdict(c) for c in claims]}, indent=1).encode()
    )
    by_name = {c.name: c for c in claims}

    fig, (ax_s, ax_k, ax_p) = plt.subplots(1, 3, figsize=(15, 4.2))
    s = by_name["surrogate error"].series
    ax_s.plot(s["epsilon"], s["error"], marker="o", label="|J(θ')−J(θ) − L_θ(θ')|")
    ax_s.plot(s["epsilon"], s["bound"], label="bound from 2(1−(1−ε)^t)")
    ax_s.plot(s["epsilon"], s["notes_bound_2et"], ls="--", label="notes' bound 2εt")
    ax_s.set(xscale="log", yscale="log", xlabel="ε = max_s TV(π', π)", title="surrogate error vs policy distance")
    ax_s.legend(fontsize=8)
    k = by_name["KL ≈ ½ΔθᵀFΔθ"].series
    ax_k.plot(k["step"], k["kl"], marker="o", label="E_s KL(π_θ' ‖ π_θ)")
    ax_k.plot(k["step"], k["quadratic"], label="½ ΔθᵀFΔθ")
    ax_k.set(xscale="log", yscale="log", xlabel="‖Δθ‖", title="KL vs its quadratic model")
    ax_k.legend(fontsize=8)
    p = by_name["soft policy iteration"].series
    ax_p.plot(range(len(p["gap"])), [max(x, 1e-16) for x in p["gap"]], marker="o")
    ax_p.set(yscale="log", xlabel="iteration", ylabel="‖Q^π − Q*_soft‖∞", title="soft policy iteration")
    fig.tight_layout()
    paths.append(out / "theory.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths

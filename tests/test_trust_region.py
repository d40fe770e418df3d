"""The trust-region core against explicit matrices (CHECKLIST item 29) and its guarantees."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call, grad, vmap

from pgrad.networks import ActorCritic
from pgrad.trust_region import (
    SurrogateProblem,
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flat_params,
    set_flat_params,
)

pytestmark = pytest.mark.usefixtures("float64")  # conftest: float64 for exact comparisons


HEADS = {  # a policy head of each kind: Categorical, DiagGaussian, MultiCategorical, Bernoulli
    True: dict(action_dim=3, discrete=True),
    False: dict(action_dim=2, discrete=False),
    "multi": dict(action_dim=5, discrete=False, nvec=[2, 3]),
    "binary": dict(action_dim=3, discrete=False, binary=True),
}
ENUMERABLE = {  # every joint action of the enumerable heads
    True: [torch.tensor(a) for a in range(3)],
    "multi": [torch.tensor([a, b]) for a in range(2) for b in range(3)],
    "binary": [torch.tensor([a, b, c], dtype=torch.float64) for a in (0, 1) for b in (0, 1) for c in (0, 1)],
}


def tiny_policy(discrete, seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    policy = ActorCritic(obs_dim=3, hidden_sizes=(4,), **HEADS[discrete])
    with torch.no_grad():  # move off the 0.01-gain init so the policy is not nearly uniform
        for p in policy.policy_parameters():
            p.add_(0.5 * torch.randn_like(p))
    return policy


def policy_params(policy: ActorCritic) -> dict[str, torch.Tensor]:
    ids = {id(p) for p in policy.policy_parameters()}
    return {name: p for name, p in policy.named_parameters() if id(p) in ids}


def explicit_kl_hessian(policy: ActorCritic, obs: torch.Tensor) -> torch.Tensor:
    """∇²_θ E_s[KL(π_θold ‖ π_θ)] at θ = θold, by autograd.functional.hessian over the flat θ."""
    named = policy_params(policy)
    names, shapes = list(named), [p.shape for p in named.values()]
    theta0 = torch.cat([p.detach().reshape(-1) for p in named.values()])
    with torch.no_grad():
        old = policy.distribution(obs)

    def kl_of(flat: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            n = int(np.prod(shape))
            params[name] = flat[offset : offset + n].view(shape)
            offset += n
        dist = _distribution_with(policy, params, obs)
        return old.kl(dist).mean()

    return torch.autograd.functional.hessian(kl_of, theta0)


def _distribution_with(policy: ActorCritic, params: dict[str, torch.Tensor], obs: torch.Tensor):
    """π(·|s) with the policy's parameters replaced by ``params`` (functional, differentiable)."""

    class Call(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner._policy_out(x)

    out = functional_call(Call(policy), {f"inner.{k}": v for k, v in params.items()}, (obs,))
    if policy.discrete:  # Categorical, MultiCategorical or Bernoulli: no parameter outside the network
        return policy._head_to_distribution(out)
    from pgrad.distributions import DiagGaussian

    return DiagGaussian(out, params["log_std"])


def per_sample_scores(policy: ActorCritic, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """∇_θ log π(a_i|s_i) for each pair, ``[M, P]``, with torch.func (vmap of grad)."""
    named = {k: v.detach() for k, v in policy_params(policy).items()}

    def log_prob(params, s, a):
        return _distribution_with(policy, params, s[None]).log_prob(a[None]).squeeze(0)

    grads = vmap(grad(log_prob), in_dims=(None, 0, 0))(named, obs, actions)
    return torch.cat([grads[k].reshape(obs.shape[0], -1) for k in named], dim=1)


@pytest.mark.parametrize("kind", [True, "multi", "binary"], ids=["categorical", "multi-categorical", "bernoulli"])
def test_fvp_equals_explicit_fisher_over_every_joint_action(kind):
    policy = tiny_policy(kind)
    obs = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    params = policy.policy_parameters()
    # F = E_s Σ_a π(a|s) ∇log π(a|s) ∇log π(a|s)ᵀ, the expectation over (joint) actions done exactly
    fisher = torch.zeros(len(flat_params(params)), len(flat_params(params)))
    total = torch.zeros(6)
    for a in ENUMERABLE[kind]:
        actions = a.expand(6, *a.shape)
        with torch.no_grad():
            probs = policy.distribution(obs).log_prob(actions).exp()
        total += probs
        scores = per_sample_scores(policy, obs, actions)
        fisher += torch.einsum("b,bi,bj->ij", probs, scores, scores) / 6
    torch.testing.assert_close(total, torch.ones(6))  # the enumeration is every action, once
    hessian = explicit_kl_hessian(policy, obs)
    torch.testing.assert_close(fisher, hessian, rtol=1e-8, atol=1e-10)  # the notes: Hessian of KL = Fisher

    with torch.no_grad():
        old = policy.distribution(obs)
    fvp = fisher_vector_product(old.kl(policy.distribution(obs)).mean(), params, damping=0.0)
    for seed in range(3):
        v = torch.randn(fisher.shape[0], generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fvp(v), fisher @ v, rtol=1e-8, atol=1e-10)
    fvp_damped = fisher_vector_product(old.kl(policy.distribution(obs)).mean(), params, damping=0.1)
    torch.testing.assert_close(fvp_damped(v), fisher @ v + 0.1 * v, rtol=1e-8, atol=1e-10)


def test_fvp_equals_explicit_fisher_gaussian():
    policy = tiny_policy(discrete=False)
    obs = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    params = policy.policy_parameters()
    assert any(p is policy.log_std for p in params)  # the log-std is part of θ (CHECKLIST item 27)
    hessian = explicit_kl_hessian(policy, obs)

    # Monte Carlo over actions: F ≈ (1/M) Σ score scoreᵀ with M = 4 × 50k sampled actions
    m = 50_000
    states = obs.repeat_interleave(m, 0)
    with torch.no_grad():
        actions = policy.distribution(states).sample(torch.Generator().manual_seed(2))
    scores = per_sample_scores(policy, states, actions)
    fisher_mc = scores.T @ scores / scores.shape[0]
    scale = hessian.abs().max()
    assert (fisher_mc - hessian).abs().max() < 0.03 * scale

    with torch.no_grad():
        old = policy.distribution(obs)
    fvp = fisher_vector_product(old.kl(policy.distribution(obs)).mean(), params, damping=0.0)
    for seed in range(3):
        v = torch.randn(hessian.shape[0], generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fvp(v), hessian @ v, rtol=1e-8, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 25), st.integers(0, 2**31 - 1))
def test_conjugate_gradient_matches_numpy_solve(n, seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, n))
    a = q @ q.T + 0.5 * np.eye(n)  # symmetric positive definite, condition number bounded
    b = rng.normal(size=n)
    expected = np.linalg.solve(a, b)
    A = torch.as_tensor(a)
    result = conjugate_gradient(lambda v: A @ v, torch.as_tensor(b), max_iterations=3 * n, tolerance=1e-24)
    np.testing.assert_allclose(result.x.numpy(), expected, rtol=1e-6, atol=1e-8)
    assert result.residual < 1e-9


def _problem(seed: int, discrete: bool):
    policy = tiny_policy(discrete, seed)
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(32, 3, generator=g)
    with torch.no_grad():
        actions = policy.distribution(obs).sample(g)
    advantages = torch.randn(32, generator=g)
    return policy, SurrogateProblem(policy.distribution, policy.policy_parameters(), obs, actions, advantages)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from(list(HEADS)),
    st.sampled_from([1e-4, 1e-3, 1e-2, 0.05]),
    st.floats(1.0, 50.0),
)
def test_line_search_never_accepts_a_step_beyond_the_trust_region(seed, discrete, delta, overshoot):
    """Whatever the step (here the natural step blown up by ``overshoot``), an accepted update has
    exact KL ≤ δ and a better surrogate; a rejected one leaves θ exactly as it was."""
    policy, problem = _problem(seed, discrete)
    params = policy.policy_parameters()
    before = flat_params(params)
    old_surrogate, _ = problem.evaluate()
    step, _ = problem.natural_step(delta, damping=0.1, cg_iterations=10, cg_tolerance=1e-10)
    result = backtracking_line_search(params, overshoot * step, problem.evaluate, old_surrogate, delta, 0.8, 10)
    surrogate, kl = problem.evaluate()
    if result.accepted:
        assert kl <= delta and surrogate > old_surrogate
        assert kl == pytest.approx(result.kl) and surrogate - old_surrogate == pytest.approx(result.improvement)
    else:
        assert torch.equal(flat_params(params), before)


def test_failed_line_search_restores_the_parameters():
    policy, problem = _problem(0, True)
    params = policy.policy_parameters()
    before = flat_params(params)
    old_surrogate, _ = problem.evaluate()
    step, _ = problem.natural_step(0.01, 0.1, 10, 1e-10)
    result = backtracking_line_search(params, -step, problem.evaluate, old_surrogate, 0.01, 0.8, 5)  # uphill never
    assert not result.accepted and result.backtracks == 5
    assert torch.equal(flat_params(params), before)


@pytest.mark.parametrize("discrete", list(HEADS), ids=["categorical", "gaussian", "multi-categorical", "bernoulli"])
def test_npg_step_reaches_kl_close_to_delta_for_small_delta(discrete):
    """½ sᵀFs = δ by construction, so the exact KL of the undamped natural step → δ as δ → 0
    (the quadratic model is second-order accurate); with damping the model over-counts, KL < δ."""
    errors = []
    for delta in (1e-6, 1e-8):
        policy, problem = _problem(3, discrete)
        params = policy.policy_parameters()
        step, _ = problem.natural_step(delta, damping=0.0, cg_iterations=200, cg_tolerance=1e-28)
        set_flat_params(params, flat_params(params) + step)
        _, kl = problem.evaluate()
        errors.append(abs(kl / delta - 1.0))
    assert errors[1] < 0.02 and errors[1] < errors[0], errors
    policy, problem = _problem(3, discrete)
    step, _ = problem.natural_step(1e-3, damping=0.1, cg_iterations=10, cg_tolerance=1e-10)
    params = policy.policy_parameters()
    set_flat_params(params, flat_params(params) + step)
    assert 0.3 * 1e-3 < problem.evaluate()[1] <= 1e-3


def test_old_distribution_stays_frozen_while_parameters_move():
    """Regression: DiagGaussian's log-std is a view of the parameter; the old π must be a copy."""
    policy, problem = _problem(0, discrete=False)
    before = problem.old_dist.log_std.clone()
    with torch.no_grad():
        policy.log_std.add_(1.0)
    torch.testing.assert_close(problem.old_dist.log_std, before)
    assert problem.evaluate()[1] > 0.5  # KL(old‖new) sees the change; it was ≈ 0 (or < 0) with the bug


@pytest.mark.parametrize("algo", ["npg", "trpo"])
def test_npg_and_trpo_update_logs_and_respect_their_kl(algo, tmp_path):
    import csv

    import pgrad

    torch.set_default_dtype(torch.float32)
    pgrad.train(
        algo,
        env="CartPole-v1",
        total_steps=4096,
        seed=0,
        run_dir=str(tmp_path / algo),
        eval_episodes=0,
        tensorboard=False,
    )
    rows = list(csv.DictReader(open(tmp_path / algo / "progress.csv")))
    assert len(rows) == 4  # 2 envs × 512 steps per update
    for row in rows:
        assert float(row["losses/cg_residual"]) >= 0 and float(row["losses/cg_iterations"]) >= 1
        kl = float(row["losses/kl"])
        if algo == "trpo":
            assert float(row["losses/line_search_accepted"]) in (0.0, 1.0)
            if float(row["losses/line_search_accepted"]):
                assert kl <= 0.01 and float(row["losses/surrogate_improvement"]) > 0
        else:
            assert 0 < kl < 0.05  # NPG's KL is only approximately δ = 0.01


def test_trpo_learns_cartpole_short_budget(tmp_path):
    import pgrad

    torch.set_default_dtype(torch.float32)
    agent = pgrad.train(
        "trpo", env="CartPole-v1", total_steps=40_000, seed=0, run_dir=str(tmp_path / "r"), tensorboard=False
    )
    # a smoke budget (the preset runs 100k): well above a random policy (~22) on every seed tried (0-2)
    assert agent.evaluation.mean >= 300, agent.evaluation.returns


@pytest.mark.parametrize("algo", ["npg", "trpo"])
def test_a_zero_policy_gradient_takes_no_step_and_logs_finite_numbers(algo):
    """All advantages equal (e.g. zero after normalisation): ∇L = 0, CG's 0/0 must not become a NaN step."""
    from pgrad.algos import get_algo
    from pgrad.buffers import RolloutBuffer

    entry = get_algo(algo)
    cfg = entry.config_class(n_steps=8, n_envs=2, batch_size=8, normalize_advantage=False, hidden_sizes=(4,))
    space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    agent = entry.algo_class(cfg, space, gym.spaces.Discrete(2), torch.device("cpu"))
    agent.policy.float()  # this module runs in float64; the rollout buffer stores float32
    buf = RolloutBuffer(8, 2, (3,), (), torch.int64)
    buf.obs.normal_()
    buf.values.zero_()
    buf.rewards.zero_()
    buf.next_values.zero_()  # every TD error and advantage is exactly 0
    before = flat_params(agent.policy.policy_parameters())
    metrics = agent.update(buf, progress_remaining=1.0)
    assert torch.equal(flat_params(agent.policy.policy_parameters()), before)
    # (explained variance is undefined for constant returns, as check_finite knows)
    assert all(math.isfinite(v) for k, v in metrics.items() if k != "losses/explained_variance"), metrics
    assert metrics.get("losses/step_norm", 0.0) == 0.0 and metrics["losses/cg_iterations"] == 0.0
    result = conjugate_gradient(lambda v: v, torch.zeros(5))
    assert torch.equal(result.x, torch.zeros(5)) and result.iterations == 0

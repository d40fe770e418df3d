"""The theory lab against independent references: autograd and finite differences for the exact
gradient, naive loops for the estimators, and the notes' claims measured on tabular MDPs."""

from __future__ import annotations

import pytest
import torch

from pgrad.cli import main as cli_main
from pgrad.lab import exact
from pgrad.lab import gradient_estimators as ge
from pgrad.lab.mdps import TabularMDP, chain, gridworld, make_mdp, random_mdp
from pgrad.lab.sampling import log_probs, per_trajectory_gradients, sample
from pgrad.lab.study import StudyConfig, run_study, summarize
from pgrad.lab.theory import (
    TheoryConfig,
    check_kl_quadratic,
    check_soft_policy_iteration,
    performance_difference,
    run_theory,
)


def _theta(mdp: TabularMDP, seed: int = 0, scale: float = 0.7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(mdp.n_states, mdp.n_actions, dtype=torch.float64, generator=g)


MDP_CASES = [
    random_mdp(seed=1, horizon=None, gamma=0.9),
    random_mdp(seed=2, n_states=4, n_actions=2, horizon=7, gamma=1.0),
    random_mdp(seed=3, horizon=12, gamma=0.8),
    chain(horizon=10),
    gridworld(size=3, horizon=None, gamma=0.9),
]


@pytest.mark.parametrize("mdp", MDP_CASES, ids=lambda m: f"{m.name}-T{m.horizon}-g{m.gamma}")
def test_exact_gradient_equals_autograd_and_finite_differences(mdp):
    theta = _theta(mdp)
    g = exact.policy_gradient(mdp, theta)
    torch.testing.assert_close(g, exact.autograd_gradient(mdp, theta), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g, exact.finite_difference_gradient(mdp, theta), rtol=1e-6, atol=1e-8)


def test_exact_objective_matches_brute_force_enumeration():
    """J for a finite horizon by enumerating every trajectory (independent of the recursions)."""
    mdp = random_mdp(n_states=3, n_actions=2, seed=4, horizon=3, gamma=0.9)
    pi = exact.softmax_policy(_theta(mdp))
    total = 0.0

    def walk(s, t, prob, ret):
        nonlocal total
        if t == mdp.horizon:
            total += prob * ret
            return
        for a in range(mdp.n_actions):
            for s2 in range(mdp.n_states):
                p = prob * pi[s, a] * mdp.P[s, a, s2]
                walk(s2, t + 1, p, ret + mdp.gamma**t * mdp.R[s, a])

    for s0 in range(mdp.n_states):
        walk(s0, 0, mdp.mu0[s0], 0.0)
    assert exact.evaluate(mdp, pi).J.item() == pytest.approx(float(total), abs=1e-12)


def test_infinite_horizon_is_the_limit_of_long_finite_horizons():
    mdp = random_mdp(seed=5, gamma=0.8, horizon=None)
    theta = _theta(mdp)
    far = exact.policy_gradient(mdp.replace(horizon=200), theta)
    torch.testing.assert_close(far, exact.policy_gradient(mdp, theta), rtol=1e-12, atol=1e-12)


def test_mdp_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="gamma=1.0 is invalid for the infinite-horizon form"):
        random_mdp(gamma=1.0, horizon=None)
    with pytest.raises(ValueError, match="unknown MDP 'nope'"):
        make_mdp("nope", horizon=5, gamma=1.0)
    with pytest.raises(ValueError, match="horizon=0"):
        chain(horizon=0)


def test_sampler_frequencies_match_the_exact_state_distribution():
    mdp = gridworld(size=3, horizon=6)
    pi = exact.softmax_policy(_theta(mdp))
    traj = sample(mdp, pi, 40_000, torch.Generator().manual_seed(0))
    p_exact = exact.evaluate(mdp, pi).occupancy  # γ = 1: the plain state distribution per t
    p_hat = torch.nn.functional.one_hot(traj.states, mdp.n_states).double().mean(0)
    assert (p_hat - p_exact).abs().max() < 0.015
    assert traj.rewards.mean(0).sum().item() == pytest.approx(exact.evaluate(mdp, pi).J.item(), abs=0.02)


def test_closed_form_score_equals_autograd_of_weighted_log_probs():
    mdp = random_mdp(seed=6, horizon=5, gamma=1.0)
    theta = _theta(mdp).requires_grad_(True)
    pi = exact.softmax_policy(theta.detach())
    traj = sample(mdp, pi, 7, torch.Generator().manual_seed(1))
    w = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    closed = per_trajectory_gradients(traj, pi, w)
    for i in range(7):
        logp = torch.log_softmax(theta, -1)[traj.states[i], traj.actions[i]]
        (auto,) = torch.autograd.grad((w[i] * logp).sum(), theta)
        torch.testing.assert_close(closed[i], auto)


def _setting(mdp, theta, theta_old=None, seed=0):
    pi = exact.softmax_policy(theta)
    pi_old = exact.softmax_policy(theta if theta_old is None else theta_old)
    fit = sample(mdp, pi, 300, torch.Generator().manual_seed(seed + 100))
    return ge.Setting(mdp, pi, pi_old, ge.exact_critic(mdp, pi), ge.fitted_critic(mdp, fit), 0.9)


def test_estimator_weights_match_naive_loops():
    mdp = random_mdp(seed=7, horizon=6, gamma=0.9)
    theta, theta_old = _theta(mdp), _theta(mdp, seed=1)
    st = _setting(mdp, theta, theta_old)
    traj = sample(mdp, st.pi_old, 5, torch.Generator().manual_seed(3))
    r, T, gamma = traj.rewards, traj.T, mdp.gamma
    V, _ = st.fitted.values(traj)
    Vx, _ = st.exact.values(traj)
    ratio = st.pi[traj.states, traj.actions] / st.pi_old[traj.states, traj.actions]
    for i in range(traj.m):
        G0 = sum(gamma**t * r[i, t] for t in range(T))
        to_go = [sum(gamma ** (k - t) * r[i, k] for k in range(t, T)) for t in range(T)]
        assert torch.allclose(ge.reinforce(traj, st)[i], torch.full((T,), float(G0), dtype=torch.float64))
        expected_rtg = torch.tensor([gamma**t * to_go[t] for t in range(T)], dtype=torch.float64)
        assert torch.allclose(ge.reward_to_go(traj, st)[i], expected_rtg)
        # 2-step with the fitted (stationary) V, nothing after the horizon
        v = [V[i, t].item() for t in range(T)] + [0.0, 0.0]
        two = [
            sum(gamma**k * r[i, t + k] for k in range(2) if t + k < T) + gamma**2 * v[t + 2] - v[t] for t in range(T)
        ]
        assert torch.allclose(
            ge.n_step(2)(traj, st)[i], torch.tensor([gamma**t * two[t] for t in range(T)], dtype=torch.float64)
        )
        # GAE with the exact V: Σ_k (γλ)^k δ_{t+k}
        delta = [r[i, t] + gamma * (Vx[i, t + 1] if t + 1 < T else 0.0) - Vx[i, t] for t in range(T)]
        lam = 0.7
        gae = [sum((gamma * lam) ** (k - t) * delta[k] for k in range(t, T)) for t in range(T)]
        assert torch.allclose(
            ge.gae(lam, "exact")(traj, st)[i],
            torch.tensor([gamma**t * float(gae[t]) for t in range(T)], dtype=torch.float64),
        )
        # per-decision IS: Σ_{t'≥t} Π_{k≤t'} ρ_k γ^{t'} r_{t'}
        pd = [sum(torch.prod(ratio[i, : k + 1]) * gamma**k * r[i, k] for k in range(t, T)) for t in range(T)]
        assert torch.allclose(ge.importance_sampled_per_decision(traj, st)[i], torch.stack(pd))
        assert torch.allclose(
            ge.importance_sampled(traj, st)[i], torch.prod(ratio[i]) * G0 * torch.ones(T, dtype=torch.float64)
        )


def test_importance_sampled_at_theta_old_equals_plain_estimator_exactly():
    mdp = chain(horizon=15)
    theta = _theta(mdp)
    st = _setting(mdp, theta)  # θ_old = θ
    traj = sample(mdp, st.pi, 50, torch.Generator().manual_seed(4))
    assert torch.equal(log_probs(st.pi, traj) - log_probs(st.pi_old, traj), torch.zeros(50, 15, dtype=torch.float64))
    assert torch.equal(ge.importance_sampled(traj, st), ge.reinforce(traj, st))
    plain_rtg = ge.reward_to_go(traj, st)
    torch.testing.assert_close(ge.importance_sampled_per_decision(traj, st), plain_rtg, rtol=1e-12, atol=1e-12)


def test_summarize_flags_a_known_bias_and_passes_an_unbiased_mean():
    g = torch.Generator().manual_seed(0)
    G = torch.randn(4000, 6, dtype=torch.float64, generator=g)
    target = torch.zeros(6, dtype=torch.float64)
    clean = summarize(G, target, 1, 0.99, 200, g)
    assert clean.within_ci and clean.bias_ci[0] == 0.0
    assert clean.variance == pytest.approx(6.0, rel=0.05)
    shifted = summarize(G + 0.2, target, 1, 0.99, 200, g)
    assert not shifted.within_ci
    assert shifted.bias_ci[0] < 0.2 * 6**0.5 < shifted.bias_ci[1]


@pytest.fixture(scope="module")
def chain_study():
    return run_study(StudyConfig(mdp="chain", horizons=(5, 10, 20, 40), samples=2000, seed=0, bootstrap=100))


def test_unbiased_estimators_agree_with_the_exact_gradient_and_biased_ones_do_not(chain_study):
    by_name = {r.name: r for r in chain_study.estimators}
    for res in chain_study.estimators:
        if res.unbiased_by_theory:
            assert all(s.within_ci for s in res.per_horizon), res.name
            assert res.per_horizon[-1].bias_ci[0] == 0.0, res.name  # the bias CI contains 0
    # λ < 1 with a wrong (stationary) V: measurably biased — the CI excludes 0
    for name in (
        "GAE λ=0 (fitted V)",
        "GAE λ=0.5 (fitted V)",
        "GAE λ=0.9 (fitted V)",
        "1-step (fitted V)",
        "discounted γ'=0.9",
    ):
        assert by_name[name].per_horizon[-1].bias_ci[0] > 0, name
        assert not by_name[name].per_horizon[-1].within_ci, name
    # ... and λ = 1 with the exact V is unbiased; bias shrinks as λ → 1
    assert by_name["GAE λ=1 (exact V)"].per_horizon[-1].within_ci
    biases = [by_name[f"GAE λ={lam:g} (fitted V)"].per_horizon[-1].bias for lam in (0.0, 0.5, 0.9, 0.95)]
    assert biases == sorted(biases, reverse=True)


def test_baselines_and_reward_to_go_lower_the_variance(chain_study):
    by_name = {r.name: r for r in chain_study.estimators}
    base = by_name["reinforce"].per_horizon
    for name in ("reinforce + const baseline", "reward-to-go", "rtg + exact V", "rtg + fitted V"):
        for s, b in zip(by_name[name].per_horizon, base, strict=True):
            assert s.variance < b.variance, (name, s.T)
    # GAE: variance grows with λ (exact V), the bias–variance trade-off's other half
    variances = [by_name[f"GAE λ={lam:g} (exact V)"].per_horizon[-1].variance for lam in (0.0, 0.5, 0.9, 0.95, 1.0)]
    assert variances == sorted(variances)


def test_mse_of_unbiased_estimators_falls_like_one_over_m(chain_study):
    by_name = {r.name: r for r in chain_study.estimators}
    for name in ("reinforce", "reward-to-go", "rtg + exact V"):
        assert -1.3 < by_name[name].mse_slope_m < -0.7, name
    assert by_name["1-step (fitted V)"].mse_slope_m > -0.2  # the bias does not average away


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reinforce_variance_grows_faster_with_horizon_than_reward_to_go(seed):
    cfg = StudyConfig(
        mdp="random", horizons=(5, 10, 20, 40), samples=1000, seed=seed, lambdas=(1.0,), n_steps=(1,), bootstrap=20
    )
    by_name = {r.name: r for r in run_study(cfg).estimators}
    assert by_name["reinforce"].variance_slope_T > by_name["reward-to-go"].variance_slope_T + 0.05


def test_performance_difference_identity_holds_exactly():
    for mdp in (
        random_mdp(seed=8, horizon=None, gamma=0.95),
        random_mdp(seed=9, horizon=15, gamma=1.0),
        chain(horizon=None, gamma=0.9),
    ):
        theta = _theta(mdp)
        for k in range(3):
            lhs, rhs = performance_difference(mdp, theta, _theta(mdp, seed=10 + k, scale=2.0))
            assert abs(lhs - rhs) < 1e-12 * (1 + abs(lhs))


def test_kl_matches_its_quadratic_model_for_small_steps():
    mdp = random_mdp(seed=11, horizon=None, gamma=0.9)
    d = torch.randn(mdp.n_states, mdp.n_actions, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    claim = check_kl_quadratic(mdp, _theta(mdp), d / d.norm(), [1e-3, 1e-2, 1e-1, 1.0])
    assert claim.holds
    assert claim.measured["ratio at smallest step"] == pytest.approx(1.0, abs=1e-3)


def test_fisher_matrix_is_the_hessian_of_the_mean_kl():
    mdp = random_mdp(seed=12, n_states=3, n_actions=3, horizon=None, gamma=0.9)
    theta = _theta(mdp)
    hessian = torch.autograd.functional.hessian(lambda t: exact.mean_kl(mdp, t, theta), theta.clone())
    n = theta.numel()
    torch.testing.assert_close(hessian.reshape(n, n), exact.fisher_matrix(mdp, theta), rtol=1e-9, atol=1e-12)


def test_soft_policy_iteration_is_monotone_and_converges():
    for mdp in (random_mdp(seed=13, gamma=0.9), gridworld(size=3, horizon=None, gamma=0.9)):
        claim = check_soft_policy_iteration(mdp, alpha=0.3)
        assert claim.holds, claim.measured
        assert claim.measured["min over iterations of min(Q_new − Q_old)"] > -1e-10


@pytest.mark.parametrize("name", ["random", "chain", "gridworld"])
def test_every_theory_claim_holds(name):
    claims = run_theory(TheoryConfig(mdp=name, seed=0))
    assert [c.name for c in claims if not c.holds] == []


def test_lab_cli_writes_json_and_figures(tmp_path, capsys):
    out = tmp_path / "v"
    assert (
        cli_main(["lab", "variance", "--mdp", "chain", "--horizons", "3,6", "--samples", "200", "--out", str(out)]) == 0
    )
    assert {p.name for p in out.iterdir()} == {
        "variance.json",
        "variance_vs_horizon.png",
        "gae_lambda.png",
        "mse_vs_samples.png",
    }
    assert "reward-to-go" in capsys.readouterr().out
    assert cli_main(["lab", "theory", "--mdp", "chain", "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "theory.json").is_file() and (tmp_path / "t" / "theory.png").is_file()


def test_lab_cli_rejects_bad_input_in_one_line(capsys):
    assert cli_main(["lab", "variance", "--mdp", "maze"]) == 2
    assert "mdp='maze' is invalid: must be one of 'chain', 'gridworld', 'random'" in capsys.readouterr().err
    assert cli_main(["lab", "variance", "--samples", "5"]) == 2
    assert "samples=5 is invalid" in capsys.readouterr().err
    assert cli_main(["lab", "nonsense"]) == 2

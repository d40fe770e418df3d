"""``pgrad lab probe`` (issue 22): checked on tabular MDPs against the lab's exact gradient and the
estimators' exact means, then as a user runs it (a training run it probes, a saved run, bad input)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pgrad.lab import probe as P
from pgrad.lab.exact import evaluate, policy_gradient, softmax_policy
from pgrad.lab.mdps import make_mdp

CLI = [sys.executable, "-m", "pgrad.cli"]


def tabular(seed: int = 0, horizon: int = 6, gamma: float = 0.9):
    mdp = make_mdp("random", horizon=horizon, gamma=gamma, seed=seed)
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(mdp.n_states, mdp.n_actions, generator=g, dtype=torch.float64)
    values = evaluate(mdp, softmax_policy(theta)).V[0]  # V_0(s): a stationary baseline, wrong for t > 0
    return mdp, theta, values


def exact_td0_mean(mdp, theta: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """E[Σ_t ∇log π(a_t|s_t) (r_t + γ (1 − [t = T−1]) V(s_{t+1}) − V(s_t))], summed explicitly over
    t, s, a: GAE(λ = 0) without γ^t, with the episode terminating at the horizon."""
    pi = softmax_policy(theta)
    S, A = pi.shape
    p = mdp.mu0.clone()
    mean = torch.zeros(S, A, dtype=torch.float64)
    for t in range(mdp.horizon):
        cont = 1.0 if t < mdp.horizon - 1 else 0.0
        for s in range(S):
            for a in range(A):
                w = mdp.R[s, a] + mdp.gamma * cont * (mdp.P[s, a] @ values) - values[s]
                score = -pi[s].clone()
                score[a] += 1.0  # ∇_{θ[s, ·]} log π(a|s) = e_a − π(·|s)
                mean[s] += p[s] * pi[s, a] * w * score
        p = torch.einsum("s,sa,sat->t", p, pi, mdp.P)
    return mean


def test_the_reference_gradient_and_the_estimators_means_agree_with_the_exact_ones():
    mdp, theta, values = tabular(seed=1)
    subject, make_env = P.tabular_subject(mdp, theta, values)
    cfg = P.ProbeConfig(batch_sizes=(12, 60), estimates=400, reference_steps=60_000, groups=40, lambdas=(0.0, 1.0),
                        n_steps=(2,), value_states=0, n_envs=32, seed=3)  # fmt: skip
    result = P.probe(subject, make_env, cfg)
    exact = policy_gradient(mdp, theta).reshape(-1)
    # the reference is the exact gradient within its standard error (z = 4.5: every one of 15 coordinates)
    assert result.reference_gradient.shape == exact.shape
    assert ((result.reference_gradient - exact).abs() <= 4.5 * result.reference_se).all()
    assert result.reference["norm"] == pytest.approx(exact.norm().item(), rel=0.05)
    # J itself
    assert result.reference["mean_discounted_return"] == pytest.approx(evaluate(mdp, softmax_policy(theta)).J.item(),
                                                                        abs=4 * 0.02)  # fmt: skip
    by_name = {e.name: e for e in result.estimators}
    for name in ("REINFORCE (G₀)", "reward-to-go, γᵗ", "reward-to-go − V, γᵗ"):  # unbiased for ∇J
        for size in by_name[name].sizes:
            assert size.bias <= 3 * size.noise, (name, size)
            assert size.error <= 3.5 * size.noise, (name, size)
    # GAE(0) without γ^t and a stationary V: biased, by exactly ‖E ĝ − ∇J‖ (computed by hand above)
    td0 = exact_td0_mean(mdp, theta, values).reshape(-1)
    true_bias = (td0 - exact).norm().item()
    assert true_bias > 0.1
    for size in by_name["GAE λ=0"].sizes:
        assert size.bias == pytest.approx(true_bias, abs=3 * size.noise)
        assert size.cos == pytest.approx(0.0, abs=1.0)  # a cosine
    # 1-step is GAE(0) (same weights, same batches); GAE(1) = reward-to-go − V bootstrapped nowhere
    assert by_name["GAE λ=0"].sizes[0].cos == by_name["GAE λ=0"].sizes[0].cos
    assert by_name["GAE λ=1"].sizes[1].variance == pytest.approx(by_name["reward-to-go − V"].sizes[1].variance)
    # larger batches: the unbiased estimates line up with ∇J and with each other
    rtg = by_name["reward-to-go − V, γᵗ"].sizes
    assert rtg[1].cos > rtg[0].cos and rtg[1].pairwise_cos > rtg[0].pairwise_cos
    # tr Cov of a batch mean of E iid episodes scales as 1/E
    assert rtg[0].variance / rtg[1].variance == pytest.approx(rtg[1].episodes / rtg[0].episodes, rel=0.25)


def test_the_reference_standard_errors_cover_the_exact_gradient_at_their_rate():
    """95% intervals g_ref ± 1.96 se (batch means of 32 groups) hold the exact gradient about 95% of
    the time, over 12 independent probes × 15 coordinates."""
    mdp, theta, values = tabular(seed=2)
    subject, make_env = P.tabular_subject(mdp, theta, values)
    exact = policy_gradient(mdp, theta).reshape(-1)
    gradients = P.Gradients(subject)
    covered = []
    for seed in range(12):
        env = make_env(16, seed)
        sampler = P.Sampler(subject, env, torch.Generator().manual_seed(seed))
        ref = P.reference(gradients, sampler.episodes(32 * 40), 32)
        env.close()
        covered.append(((ref.gradient - exact).abs() <= 1.96 * ref.se).double())
    rate = torch.cat(covered).mean().item()
    assert 0.88 <= rate <= 0.99, rate


def test_sampled_episodes_are_whole_in_order_and_as_many_as_asked():
    mdp, theta, values = tabular(seed=0, horizon=5)
    subject, make_env = P.tabular_subject(mdp, theta, values)
    env = make_env(3, 0)
    ep = P.Sampler(subject, env, torch.Generator().manual_seed(0)).episodes(7)
    assert ep.count == 7 and ep.steps == 35
    assert ep.starts.tolist() == [0, 5, 10, 15, 20, 25, 30, 35]
    # every episode ends (terminated) at its last step only, and its rewards are R(s_t, a_t)
    assert ep.terminated.nonzero().squeeze(1).tolist() == [4, 9, 14, 19, 24, 29, 34]
    assert not ep.truncated.any()
    states = ep.obs.view(-1)
    assert torch.allclose(ep.rewards, mdp.R[states, ep.actions], atol=1e-6)  # rewards pass through float32
    # consecutive steps follow the dynamics: P(s_{t+1} | s_t, a_t) > 0
    for t in range(34):
        if t % 5 != 4:
            assert mdp.P[states[t], ep.actions[t], states[t + 1]] > 0
    env.close()


def test_monte_carlo_values_from_a_copied_state_are_the_exact_time_dependent_values():
    mdp, theta, values = tabular(seed=4, horizon=6)
    subject, make_env = P.tabular_subject(mdp, theta, values)
    V = evaluate(mdp, softmax_policy(theta)).V  # [T, S]
    copies = make_env(400, 1)
    names = {k.split(".", 1)[1] for k in copies.fresh_sim_state()[1]}
    (layer,) = {k.rsplit(".", 1)[0] for k in names if k.endswith(".horizon")}  # the env under pgrad's wrappers
    for t, s in ((0, 1), (3, 2), (5, 0)):
        state = {f"{layer}.t": t, f"{layer}.s": s}
        returns = P._returns_from(subject, copies, np.array([s]), state, torch.Generator().manual_seed(t))
        se = returns.std().item() / math.sqrt(len(returns))
        assert returns.mean().item() == pytest.approx(V[t, s].item(), abs=4 * se + 1e-12)
    copies.close()


def test_the_value_check_on_a_tabular_mdp():
    mdp, theta, _ = tabular(seed=5)
    V = evaluate(mdp, softmax_policy(theta)).V
    cfg = P.ProbeConfig(value_states=48, value_rollouts=64, n_envs=8, seed=0)
    checks = {}
    for offset in (0.0, 2.0):  # V_0(s) + offset as the "learned" V: right at t = 0 only, then off by 2
        subject, make_env = P.tabular_subject(mdp, theta, V[0] + offset)
        checks[offset] = P.value_check(subject, make_env, cfg, torch.Generator().manual_seed(0))
    assert checks[0.0].states == 48 and checks[0.0].rollouts == 64
    # the same states and returns (the same seed): only the learned V differs
    assert checks[2.0].mean_value == checks[0.0].mean_value
    assert checks[2.0].mean_learned_value == pytest.approx(checks[0.0].mean_learned_value + 2.0)
    assert checks[2.0].advantage_ms_true == checks[0.0].advantage_ms_true
    # E[(G − V̂)²] = E[(G − V)²] + E[(V − V̂)²] (the cross term vanishes in expectation): about +4 here
    assert checks[2.0].advantage_ms_learned > checks[0.0].advantage_ms_learned + 2.0
    assert checks[2.0].mean_relative_error > checks[0.0].mean_relative_error


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_run_with_the_probe_is_bitwise_the_run_without(tmp_path, algo):
    import pgrad

    cfg = P.ProbeConfig(batch_sizes=(64,), estimates=3, reference_steps=400, groups=4, value_states=4,
                        value_rollouts=2, n_envs=2)  # fmt: skip
    runs = {}
    for name, callbacks in (("plain", []), ("probed", [P.ProbeDuringTraining([0, 256, 600], cfg)])):
        pgrad.train(algo, env="CartPole-v1", total_steps=1024, seed=3, run_dir=str(tmp_path / name), callbacks=callbacks,
                    eval_episodes=0, n_envs=2, n_steps=128, tensorboard=False)  # fmt: skip
        runs[name] = (
            load_file(tmp_path / name / "model.safetensors"),
            (tmp_path / name / "progress.csv").read_text(),
        )
        if callbacks:
            results = callbacks[0].results
            assert [r.step for r in results] == [0, 256, 768]  # each at the first update past its step
    assert runs["plain"][0].keys() == runs["probed"][0].keys()
    assert all(torch.equal(runs["plain"][0][k], runs["probed"][0][k]) for k in runs["plain"][0])
    assert [r.split(",")[:-1] for r in runs["plain"][1].splitlines()] == [
        r.split(",")[:-1] for r in runs["probed"][1].splitlines()
    ]


def test_the_cli_trains_probes_and_writes_table_json_and_figures(tmp_path):
    out = tmp_path / "probe"
    args = ["lab", "probe", "ppo", "--env", "CartPole-v1", "--at", "0,1024", "--batch-sizes", "64,256",
            "--estimates", "4", "--reference-steps", "1000", "--groups", "4", "--value-states", "4",
            "--value-rollouts", "3", "--n-envs", "4", "--lambdas", "0,0.95,1", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(CLI + args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "REINFORCE (G₀)" in proc.stdout and "PPO surrogate" in proc.stdout and "learned V vs Monte Carlo" in proc.stdout
    )
    data = json.loads((out / "probe.json").read_text())
    assert [p["step"] for p in data["probes"]] == [0, 1024]
    names = [e["name"] for e in data["probes"][0]["estimators"]]
    assert names[:4] == ["REINFORCE (G₀)", "reward-to-go, γᵗ", "reward-to-go − V, γᵗ", "reward-to-go − V"]
    assert "GAE λ=0.95" in names and names[-1] == "PPO surrogate (θ = θ_old)"
    first = data["probes"][0]["estimators"][0]["sizes"][0]
    assert first["batch_size"] == 64 and -1 <= first["cos"] <= 1 and first["variance"] > 0
    assert data["probes"][1]["value"]["states"] == 4
    for figure in ("cosine_vs_batch_size.png", "variance_vs_lambda.png", "value_error.png"):
        assert (out / figure).stat().st_size > 1000
    # a saved run, probed as it is: results in its lab/ folder
    proc = subprocess.run(CLI + ["lab", "probe", "--run", str(out / "run"), "--batch-sizes", "128", "--estimates",
                                 "3", "--reference-steps", "600", "--groups", "4", "--value-states", "0"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "value check: skipped" in proc.stdout
    assert json.loads((out / "run" / "lab" / "probe.json").read_text())["meta"]["run"] == str(out / "run")


@pytest.mark.parametrize(
    "args, message",
    [
        (["sac", "--env", "Pendulum-v1"], "ALGO 'sac' is invalid"),
        (["ppo", "--env", "CartPole-v1", "--at", "0"], "--at 0 is invalid"),
        (["ppo"], "give ALGO --env ENV"),
        (["ppo", "--env", "CartPole-v1", "--estimates", "2"], "estimates=2 is invalid"),
        (["ppo", "--env", "CartPole-v1", "--lambdas", "0.5,1.5"], "lambdas"),
        (["--run", "no/such/run"], "no/such/run"),
        (["--run", "x", "--env", "CartPole-v1"], "not both"),
        (["ppo", "--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["ppo", "--env", "CartPole-v1", "--at", "abc"], "'abc' is not a comma-separated list of integers"),
        (["ppo", "--env", "CartPole-v1", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    from pgrad.cli import main

    assert main(["lab", "probe", *args, "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "o").exists()


def test_bad_input_from_the_shell(tmp_path):
    proc = subprocess.run(CLI + ["lab", "probe", "td3", "--env", "Pendulum-v1"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "ALGO 'td3' is invalid" in proc.stderr, proc.stderr

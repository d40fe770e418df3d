"""Distributions against torch.distributions, closed forms, change of variables and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributions as td

from pgrad.distributions import Bernoulli, Categorical, DiagGaussian, EnvGenerators, MultiCategorical, TanhGaussian

pytestmark = pytest.mark.usefixtures("float64")  # conftest: float64 for exact comparisons


def test_categorical_matches_torch():
    g = torch.Generator().manual_seed(0)
    logits, other_logits = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    actions = torch.tensor([0, 3, 2, 1, 3])
    ours, ref = Categorical(logits), td.Categorical(logits=logits)
    torch.testing.assert_close(ours.log_prob(actions), ref.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(
        ours.kl(Categorical(other_logits)), td.kl_divergence(ref, td.Categorical(logits=other_logits))
    )
    assert ours.mode().tolist() == logits.argmax(-1).tolist()


def test_categorical_samples_follow_probs():
    probs = torch.tensor([[0.1, 0.6, 0.3]])
    dist = Categorical(probs.log().expand(200_000, 3))
    counts = torch.bincount(dist.sample(torch.Generator().manual_seed(1)), minlength=3) / 200_000
    torch.testing.assert_close(counts, probs[0], atol=5e-3, rtol=0)


def test_categorical_samples_follow_probs_from_per_env_gumbel_blocks():
    """Acting draws its Gumbel noise a block of steps at a time from each env's stream: every env's
    actions still follow its own π(·|s), step after step across blocks."""
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    dist, streams = Categorical(probs.log()), EnvGenerators(0, range(2))
    steps = 20 * EnvGenerators.BLOCK + 7
    actions = torch.stack([dist.sample(streams) for _ in range(steps)])  # [steps, 2]
    for env in range(2):
        counts = torch.bincount(actions[:, env], minlength=3) / steps
        torch.testing.assert_close(counts, probs[env], atol=0.03, rtol=0)


def test_multi_categorical_is_the_product_of_torch_categoricals():
    """log-prob, entropy and KL of independent factors are the sums of each factor's (torch's)."""
    g, nvec = torch.Generator().manual_seed(0), [2, 4, 3]
    logits, other = torch.randn(5, sum(nvec), generator=g), torch.randn(5, sum(nvec), generator=g)
    actions = torch.stack([torch.randint(0, n, (5,), generator=g) for n in nvec], dim=-1)
    ours = MultiCategorical(logits, nvec)
    refs = [td.Categorical(logits=x) for x in logits.split(nvec, dim=-1)]
    others = [td.Categorical(logits=x) for x in other.split(nvec, dim=-1)]
    torch.testing.assert_close(ours.log_prob(actions), sum(r.log_prob(actions[:, k]) for k, r in enumerate(refs)))
    torch.testing.assert_close(ours.entropy(), sum(r.entropy() for r in refs))
    torch.testing.assert_close(
        ours.kl(MultiCategorical(other, nvec)), sum(td.kl_divergence(r, o) for r, o in zip(refs, others, strict=True))
    )
    assert ours.mode().tolist() == torch.stack([x.argmax(-1) for x in logits.split(nvec, -1)], -1).tolist()
    torch.testing.assert_close(ours[1:3].log_prob(actions[1:3]), ours.log_prob(actions)[1:3])


def test_multi_categorical_samples_follow_each_factor_from_per_env_streams():
    nvec, steps = [3, 2], 20 * EnvGenerators.BLOCK
    probs = [torch.tensor([0.2, 0.5, 0.3]), torch.tensor([0.9, 0.1])]
    dist = MultiCategorical(torch.cat([p.log() for p in probs]).expand(2, 5), nvec)
    streams = EnvGenerators(0, range(2))
    actions = torch.stack([dist.sample(streams) for _ in range(steps)])  # [steps, envs, K]
    for k, p in enumerate(probs):
        counts = torch.bincount(actions[:, :, k].reshape(-1), minlength=len(p)) / (2 * steps)
        torch.testing.assert_close(counts, p, atol=0.03, rtol=0)


def test_bernoulli_matches_torch_and_samples_follow_sigmoid():
    g = torch.Generator().manual_seed(0)
    logits, other = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    actions = torch.randint(0, 2, (5, 3), generator=g).double()
    ours = Bernoulli(logits)
    ref, ref_other = td.Independent(td.Bernoulli(logits=logits), 1), td.Independent(td.Bernoulli(logits=other), 1)
    torch.testing.assert_close(ours.log_prob(actions), ref.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(ours.kl(Bernoulli(other)), td.kl_divergence(ref, ref_other))
    assert ours.mode().tolist() == (logits > 0).double().tolist()
    p = torch.tensor([[0.1, 0.5, 0.85]])
    samples = Bernoulli(torch.logit(p).expand(100_000, 3)).sample(torch.Generator().manual_seed(1))
    torch.testing.assert_close(samples.mean(0), p[0], atol=5e-3, rtol=0)
    assert set(samples.unique().tolist()) == {0.0, 1.0}


def test_diag_gaussian_matches_torch_state_independent_and_dependent_std():
    g = torch.Generator().manual_seed(0)
    mean, mean2 = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    for log_std, log_std2 in [
        (torch.randn(3, generator=g), torch.randn(3, generator=g)),  # a free parameter [D]
        (torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)),  # a network head [B, D]
    ]:
        ours, ref = DiagGaussian(mean, log_std), td.Independent(td.Normal(mean, log_std.exp().expand_as(mean)), 1)
        other = td.Independent(td.Normal(mean2, log_std2.exp().expand_as(mean2)), 1)
        a = torch.randn(6, 3, generator=g)
        torch.testing.assert_close(ours.log_prob(a), ref.log_prob(a))
        torch.testing.assert_close(ours.entropy(), ref.entropy())
        torch.testing.assert_close(ours.kl(DiagGaussian(mean2, log_std2)), td.kl_divergence(ref, other))


def test_gaussian_kl_monte_carlo():
    p = DiagGaussian(torch.tensor([[0.3, -1.0]]), torch.tensor([0.2, -0.5]))
    q = DiagGaussian(torch.tensor([[0.0, -0.5]]), torch.tensor([0.0, -0.2]))
    x = DiagGaussian(p.mean.expand(400_000, 2), p.log_std[0]).sample(torch.Generator().manual_seed(3))
    mc = (
        DiagGaussian(p.mean.expand_as(x), p.log_std[0]).log_prob(x)
        - DiagGaussian(q.mean.expand_as(x), q.log_std[0]).log_prob(x)
    ).mean()
    assert abs(mc.item() - p.kl(q).item()) < 0.01


def test_gaussian_score_matches_the_notes_closed_form():
    """Notes, "Gaussian Policy Example": ∇_θ log π(a|s) = Σ⁻¹ (a − μ_θ(s)) ∇_θ μ_θ(s), for μ = W s."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(2, 3, generator=g, requires_grad=True)
    log_std = torch.tensor([0.3, -0.4])
    s, a = torch.randn(3, generator=g), torch.randn(2, generator=g)
    DiagGaussian((W @ s)[None], log_std).log_prob(a[None]).sum().backward()
    sigma_inv = torch.diag((2 * log_std).exp().reciprocal())
    closed_form = torch.outer(sigma_inv @ (a - W.detach() @ s), s)  # ∂μ_i/∂W_ij = s_j
    torch.testing.assert_close(W.grad, closed_form)


def test_tanh_gaussian_log_prob_is_the_change_of_variables_density():
    mu, log_std = torch.tensor([[0.4]]), torch.tensor([-0.3])
    dist = TanhGaussian(mu, log_std)
    grid = torch.linspace(-0.999, 0.999, 4001)[:, None]
    ours = TanhGaussian(mu.expand(4001, 1), log_std).log_prob(grid)
    # p_A(a) = p_U(atanh a) · |d atanh(a)/da| = N(atanh a; μ, σ²) / (1 − a²)
    u = torch.atanh(grid)
    expected = td.Normal(mu, log_std.exp()).log_prob(u).squeeze(-1) - torch.log1p(-grid.pow(2)).squeeze(-1)
    torch.testing.assert_close(ours, expected, rtol=1e-7, atol=1e-7)
    # The density integrates to ~1 over (−1, 1).
    mass = np.trapezoid(ours.exp().numpy(), grid.squeeze(-1).numpy())
    assert abs(mass - 1.0) < 2e-3
    # rsample's log-prob (stable form) agrees with log_prob of the returned action.
    a, logp = TanhGaussian(mu.expand(1000, 1), log_std).rsample_with_log_prob(torch.Generator().manual_seed(0))
    torch.testing.assert_close(logp, TanhGaussian(mu.expand(1000, 1), log_std).log_prob(a), rtol=1e-5, atol=1e-5)
    assert dist.mode().item() == math.tanh(0.4)


def test_tanh_gaussian_rsample_is_differentiable():
    mu = torch.zeros(4, 2, requires_grad=True)
    a, logp = TanhGaussian(mu, torch.zeros(2)).rsample_with_log_prob(torch.Generator().manual_seed(0))
    (a.sum() + logp.sum()).backward()
    assert mu.grad is not None and torch.isfinite(mu.grad).all()

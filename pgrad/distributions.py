"""Action distributions behind one small interface, used by every policy in pgrad.

Each distribution is built from network outputs for a batch of ``B`` states and offers
``sample()``, ``log_prob(actions) -> [B]``, ``entropy() -> [B]``, ``kl(other) -> [B]`` (KL(self‖other))
and ``mode()`` (the deterministic action). Reparameterised ``rsample()`` where it exists.

They are thin on purpose: ``torch.distributions`` validates and broadcasts on every call, which
costs 2-4x on the per-step acting path of small-MLP runs (see ../shared/PEERS.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def env_seed(seed: int, env_index: int) -> int:
    """A 63-bit seed for environment ``env_index`` of a run seeded ``seed`` (SeedSequence-mixed,
    so (seed, i) and (seed', j) streams do not overlap the way ``seed + i`` ones would)."""
    import numpy as np

    return int(np.random.SeedSequence(seed, spawn_key=(env_index,)).generate_state(1, np.uint64)[0] >> 1)


class EnvGenerators:
    """Action randomness with one seeded stream per environment.

    Row ``k`` of a batch of states belongs to environment ``env_ids[k]``, and its noise comes from
    that environment's own generator. So env ``i``'s actions depend only on ``(seed, i)`` and the
    policy, never on how many envs share a process: splitting the envs over rollout workers
    (``pgrad.distributed``) reproduces a single-process run sample for sample.

    Each stream is drawn ``BLOCK`` steps at a time (one call per env per block instead of one per
    env per step, 4x cheaper per step); the block size is fixed, so the split still changes nothing.
    """

    BLOCK = 64

    def __init__(self, seed: int, env_ids, device: torch.device | str = "cpu"):
        self.env_ids = [int(i) for i in env_ids]
        self.streams = {str(i): torch.Generator(device).manual_seed(env_seed(seed, i)) for i in self.env_ids}
        self.kind: str | None = None
        self.block: Tensor | None = None  # [BLOCK, n_envs, ...] noise not used yet from row `pos` on
        self.pos = 0

    def draw(self, kind: str, shape: torch.Size, like: Tensor) -> Tensor:
        """Noise of ``shape`` = ``[len(env_ids), ...]``: ``kind`` is ``"uniform"``, ``"normal"`` or
        ``"gumbel"`` (G = −log(−log U) of uniforms U, transformed a block at a time)."""
        if shape[0] != len(self.env_ids):
            raise ValueError(f"a batch of {shape[0]} states for {len(self.env_ids)} environments' generators")
        block = self.block
        if block is None or self.pos == self.BLOCK or kind != self.kind or block.shape[2:] != shape[1:]:
            fn = torch.randn if kind == "normal" else torch.rand
            self.block = block = torch.stack(
                [
                    fn((self.BLOCK, *shape[1:]), generator=g, dtype=like.dtype, device=like.device)
                    for g in self.streams.values()
                ],
                dim=1,
            )
            if kind == "gumbel":
                _gumbel_(block)  # in place: self.block holds G
            self.kind, self.pos = kind, 0
        self.pos += 1
        return block[self.pos - 1]

    # A checkpoint holds the streams and the unused rest of the block (pgrad.state calls these).
    def checkpoint_state(self) -> dict:
        return {f"stream.{k}": g.get_state() for k, g in self.streams.items()} | {
            "block": self.block,
            "kind": self.kind,
            "pos": self.pos,
        }

    def load_checkpoint_state(self, state: dict) -> None:
        for k, g in self.streams.items():
            g.set_state(state[f"stream.{k}"])
        block, kind, pos = state["block"], state["kind"], state["pos"]
        if kind not in (None, "uniform", "normal", "gumbel") or not (isinstance(pos, int) and 0 <= pos <= self.BLOCK):
            raise ValueError(f"action noise state kind={kind!r}, pos={pos!r} is not one this run writes")
        if block is not None and (block.shape[:2] != (self.BLOCK, len(self.env_ids)) or kind is None):
            raise ValueError(f"action noise block of shape {list(block.shape)} does not fit {len(self.env_ids)} envs")
        self.block = None if block is None else block.clone()
        self.kind, self.pos = kind, pos


def _gumbel_(u: Tensor) -> Tensor:
    """Uniforms U → Gumbel(0, 1) noise G = −log(−log U), in place."""
    return u.log_().neg_().log_().neg_()


def _noise(kind: str, like: Tensor, generator: torch.Generator | EnvGenerators | Tensor | None) -> Tensor:
    if isinstance(generator, Tensor):  # drawn beforehand, ``like``'s shape (many seeds' updates: pgrad.seeds)
        return generator
    if isinstance(generator, EnvGenerators):
        return generator.draw(kind, like.shape, like)
    noise = (torch.randn if kind == "normal" else torch.rand)(
        like.shape, generator=generator, dtype=like.dtype, device=like.device
    )
    return _gumbel_(noise) if kind == "gumbel" else noise


class Categorical:
    """Categorical over ``A`` actions from logits ``[B, A]``; actions are int64 ``[B]``."""

    def __init__(self, logits: Tensor):
        self.logits = torch.log_softmax(logits, dim=-1)  # log π(·|s), normalised

    @property
    def probs(self) -> Tensor:
        return self.logits.exp()

    def sample(self, generator: torch.Generator | EnvGenerators | None = None) -> Tensor:
        # Gumbel-max: argmax_a (log π(a|s) + G_a), G_a = −log(−log U_a), is an exact sample of π
        # (2-3x faster on CPU than torch.multinomial for the small batches of acting).
        return (self.logits + _noise("gumbel", self.logits, generator)).argmax(dim=-1)

    def mode(self) -> Tensor:
        return self.logits.argmax(dim=-1)

    def log_prob(self, actions: Tensor) -> Tensor:
        return self.logits.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        # H = −Σ_a π(a|s) log π(a|s)
        return -(self.probs * self.logits).sum(-1)

    def _normalised(self, log_probs: Tensor) -> Categorical:
        """The same kind of distribution from log-probabilities that are already normalised (no
        second log-softmax, whose rounding would move them by an ulp)."""
        dist = type(self).__new__(type(self))
        dist.__dict__.update(self.__dict__)  # a MultiCategorical's nvec too
        dist.logits = log_probs
        return dist

    def __getitem__(self, index) -> Categorical:
        return self._normalised(self.logits[index])

    def detach(self) -> Categorical:
        """A frozen copy: later in-place changes to the network do not reach it."""
        return self._normalised(self.logits.detach().clone())

    def kl(self, other: Categorical) -> Tensor:
        # KL(p‖q) = Σ_a p(a) (log p(a) − log q(a))
        return (self.probs * (self.logits - other.logits)).sum(-1)


class MultiCategorical(Categorical):
    """Independent categoricals over a MultiDiscrete space's ``K`` indices, of ``nvec[k]`` values each,
    from concatenated logits ``[B, Σ nvec]``; actions are int64 ``[B, K]``. As the factors are
    independent, log-probabilities, entropies and KL divergences are the sums of the factors'
    (``log π(a|s) = Σ_k log π_k(a_k|s)``): Categorical's entropy and KL, summed over every factor's
    values at once, are exactly those sums."""

    def __init__(self, logits: Tensor, nvec: list[int] | tuple[int, ...]):
        self.nvec = list(nvec)
        self.logits = torch.cat([torch.log_softmax(x, dim=-1) for x in logits.split(self.nvec, dim=-1)], dim=-1)

    def _split(self, x: Tensor) -> tuple[Tensor, ...]:
        return x.split(self.nvec, dim=-1)

    def sample(self, generator: torch.Generator | EnvGenerators | None = None) -> Tensor:
        # Gumbel-max per factor, the noise of all factors drawn at once (one stream per env)
        noisy = self.logits + _noise("gumbel", self.logits, generator)
        return torch.stack([x.argmax(dim=-1) for x in self._split(noisy)], dim=-1)

    def mode(self) -> Tensor:
        return torch.stack([x.argmax(dim=-1) for x in self._split(self.logits)], dim=-1)

    def log_prob(self, actions: Tensor) -> Tensor:
        offsets = actions.new_tensor([0, *self.nvec[:-1]]).cumsum(0)  # where factor k starts in the logits
        return self.logits.gather(-1, actions.long() + offsets).sum(-1)  # Σ_k log π_k(a_k|s)


class Bernoulli:
    """Independent Bernoullis over a MultiBinary space's ``D`` bits, from logits ``[B, D]``
    (``P(a_i = 1|s) = σ(l_i)``); actions are float ``[B, D]`` of 0s and 1s."""

    def __init__(self, logits: Tensor):
        self.logits = logits
        self.log_p1, self.log_p0 = F.logsigmoid(logits), F.logsigmoid(-logits)  # log σ(l), log(1 − σ(l))

    def sample(self, generator: torch.Generator | EnvGenerators | None = None) -> Tensor:
        # a_i = 1 where U_i < σ(l_i), U_i ~ U(0, 1)
        return (_noise("uniform", self.logits, generator) < torch.sigmoid(self.logits)).to(self.logits.dtype)

    def mode(self) -> Tensor:
        return (self.logits > 0).to(self.logits.dtype)

    def log_prob(self, actions: Tensor) -> Tensor:
        # log π(a|s) = Σ_i [ a_i log σ(l_i) + (1 − a_i) log(1 − σ(l_i)) ]
        return (actions * self.log_p1 + (1.0 - actions) * self.log_p0).sum(-1)

    def entropy(self) -> Tensor:
        # H = −Σ_i [ p_i log p_i + (1 − p_i) log(1 − p_i) ]
        p1 = self.log_p1.exp()
        return -(p1 * self.log_p1 + (1.0 - p1) * self.log_p0).sum(-1)

    def __getitem__(self, index) -> Bernoulli:
        return Bernoulli(self.logits[index])

    def detach(self) -> Bernoulli:
        return Bernoulli(self.logits.detach().clone())

    def kl(self, other: Bernoulli) -> Tensor:
        # KL(p‖q) = Σ_i [ p_i (log p_i − log q_i) + (1 − p_i)(log(1 − p_i) − log(1 − q_i)) ]
        p1 = self.log_p1.exp()
        return (p1 * (self.log_p1 - other.log_p1) + (1.0 - p1) * (self.log_p0 - other.log_p0)).sum(-1)


class DiagGaussian:
    """Gaussian with diagonal covariance: mean ``[B, D]``, log-std ``[B, D]`` or ``[D]``.

    A ``[D]`` log-std is the state-independent parameter of PPO/TRPO; a ``[B, D]`` one is
    state-dependent (a network head). Log-densities are summed over the ``D`` independent dims.
    """

    def __init__(self, mean: Tensor, log_std: Tensor):
        self.mean = mean
        self.log_std = log_std.expand_as(mean)
        self.std = self.log_std.exp()

    def sample(self, generator: torch.Generator | EnvGenerators | None = None) -> Tensor:
        with torch.no_grad():
            return self.rsample(generator)

    def rsample(self, generator: torch.Generator | EnvGenerators | Tensor | None = None) -> Tensor:
        noise = _noise("normal", self.mean, generator)
        return self.mean + self.std * noise  # a = μ + σ ε, ε ~ N(0, I)

    def mode(self) -> Tensor:
        return self.mean

    def log_prob(self, actions: Tensor) -> Tensor:
        # log N(a; μ, σ²) = Σ_i [ −(a_i − μ_i)² / (2σ_i²) − log σ_i − ½ log 2π ]
        z = (actions - self.mean) / self.std
        return (-0.5 * z.pow(2) - self.log_std - _HALF_LOG_2PI).sum(-1)

    def entropy(self) -> Tensor:
        # H = Σ_i [ ½ + ½ log 2π + log σ_i ]
        return (0.5 + _HALF_LOG_2PI + self.log_std).sum(-1)

    def __getitem__(self, index) -> DiagGaussian:
        return DiagGaussian(self.mean[index], self.log_std[index])

    def detach(self) -> DiagGaussian:
        """A frozen copy. Needed: a state-independent ``log_std`` is a *view* of the parameter, so
        a distribution built under ``no_grad`` would still follow the parameter's in-place updates."""
        return DiagGaussian(self.mean.detach().clone(), self.log_std.detach().clone())

    def kl(self, other: DiagGaussian) -> Tensor:
        # KL(p‖q) = Σ_i [ log σ_q/σ_p + (σ_p² + (μ_p − μ_q)²) / (2σ_q²) − ½ ]
        var_ratio = (self.std / other.std).pow(2)
        mean_term = ((self.mean - other.mean) / other.std).pow(2)
        return (other.log_std - self.log_std + 0.5 * (var_ratio + mean_term) - 0.5).sum(-1)


class StateDependentGaussian(DiagGaussian):
    """gSDE's Gaussian (Raffin, Kober & Stulp, *Smooth Exploration for Robotic Reinforcement
    Learning*, CoRL 2021; SB3's ``StateDependentNoiseDistribution``).

    An action is ``a = μ(s) + θ_εᵀ φ(s)``: φ(s) ``[B, d]`` the policy's last hidden features, θ_ε
    ``[d, D]`` with ``θ_ε[j, k] = σ_jk ε_jk``, and ε ~ N(0, 1) drawn once per env and held for
    ``sde_sample_freq`` steps, so that for a fixed ε the exploration is a smooth function of s. Over
    ε, ``a ~ N(μ(s), diag(Σ_j φ_j(s)² σ_jk²))``: the density ``log_prob``, ``entropy`` and ``kl`` use
    (with 1e-6 added to the variance, as SB3). φ is detached there, as SB3's ``learn_features=False``:
    the std trains σ, not the features. ``sample(exploration)`` takes the held ε ``[B, d, D]``; given a
    generator (or none) instead, it draws a fresh ε per call.
    """

    def __init__(self, mean: Tensor, log_std: Tensor, latent: Tensor, matrix_std: Tensor):
        super().__init__(mean, log_std)
        self.latent, self.matrix_std = latent, matrix_std

    @classmethod
    def from_params(
        cls, mean: Tensor, latent: Tensor, log_std: Tensor, learn_features: bool = False
    ) -> StateDependentGaussian:
        """From the mean ``[B, D]``, the features φ ``[B, d]`` and log σ ``[d, D]`` (or ``[d, 1]``,
        one σ per feature for every action dim: SB3's ``full_std=False``). ``learn_features``
        (SB3's SAC): φ is not detached, so the noise and the std train the features too."""
        latent = latent if learn_features else latent.detach()
        matrix_std = log_std.exp().expand(latent.shape[-1], mean.shape[-1])
        variance = latent.pow(2) @ matrix_std.pow(2) + 1e-6  # Var[a_k | s] = Σ_j φ_j² σ_jk²
        return cls(mean, 0.5 * variance.log(), latent, matrix_std)

    def rsample(self, exploration: Tensor | torch.Generator | EnvGenerators | None = None) -> Tensor:
        if not isinstance(exploration, Tensor):
            like = self.latent.new_empty(self.latent.shape[0], *self.matrix_std.shape)
            exploration = _noise("normal", like, exploration)
        # a = μ + θ_εᵀ φ(s),  θ_ε = σ ⊙ ε  (each row's own ε)
        return self.mean + torch.bmm(self.latent.unsqueeze(1), exploration * self.matrix_std).squeeze(1)

    def __getitem__(self, index) -> StateDependentGaussian:
        return StateDependentGaussian(self.mean[index], self.log_std[index], self.latent[index], self.matrix_std)


class TanhGaussian:
    """``a = tanh(u)``, ``u ~ N(μ, σ²)``: a Gaussian squashed into ``(−1, 1)^D`` (SAC's policy).

    Change of variables: ``log π(a|s) = log N(u; μ, σ²) − Σ_i log(1 − tanh²(u_i))``, with the
    log-Jacobian in the stable form ``2 (log 2 − u − softplus(−2u))`` (CHECKLIST item 35).
    Rescaling ``(−1, 1)`` to ``[low, high]`` is the caller's (a constant shift of the log-density).
    """

    def __init__(self, mean: Tensor, log_std: Tensor):
        self.normal = DiagGaussian(mean, log_std)

    @classmethod
    def squashing(cls, normal: DiagGaussian) -> TanhGaussian:
        """``tanh`` of the given Gaussian (gSDE's :class:`StateDependentGaussian`, SAC with ``use_sde``),
        whose ``rsample`` then takes the held noise ε in place of a generator."""
        dist = cls.__new__(cls)
        dist.normal = normal
        return dist

    @staticmethod
    def _log_det_jacobian(u: Tensor) -> Tensor:
        # log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u))
        return (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)

    def rsample_with_log_prob(self, generator: torch.Generator | Tensor | None = None) -> tuple[Tensor, Tensor]:
        u = self.normal.rsample(generator)
        return torch.tanh(u), self.normal.log_prob(u) - self._log_det_jacobian(u)

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        return torch.tanh(self.normal.rsample(generator))

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.rsample(generator)

    def mode(self) -> Tensor:
        return torch.tanh(self.normal.mean)

    def log_prob(self, actions: Tensor, eps: float = 1e-6) -> Tensor:
        """Log-density of given squashed actions; they are clamped inside (−1, 1) to invert tanh."""
        u = torch.atanh(actions.clamp(-1.0 + eps, 1.0 - eps))
        return self.normal.log_prob(u) - self._log_det_jacobian(u)


Distribution = Categorical | MultiCategorical | Bernoulli | DiagGaussian | StateDependentGaussian | TanhGaussian

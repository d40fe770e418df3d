"""Networks: an MLP builder with orthogonal init, and the actor-critic module of on-policy methods.

A network's architecture is described by a small JSON-able ``spec`` dict, saved beside the
weights, so that ``pgrad.load`` rebuilds it without unpickling anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from pgrad.buffers import Sequences, minibatches, sequence_minibatches
from pgrad.distributions import (
    Bernoulli,
    Categorical,
    DiagGaussian,
    MultiCategorical,
    StateDependentGaussian,
    TanhGaussian,
)
from pgrad.encoders import ObsEncoder, needs_encoder
from pgrad.spaces import ObsLayout, action_head, space_from_json, space_to_json

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


class MLP(nn.Sequential):
    """``nn.Sequential`` of Linear and activation layers (the same parameters and names) whose
    forward calls each layer's ``forward`` directly: skipping ``Module.__call__`` per layer saves
    ~10 µs per actor-critic forward on a CPU, a sixth of it at acting batch sizes (51 µs vs 60 µs
    for 8 states, 64-64 tanh, one thread). Once a user registers a hook on a layer (or a global
    module hook) the layers are called as modules, so every hook fires."""

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        # The layers' hook registries and the global ones: torch adds a hook to these dicts in
        # place, so a look at them (0.3 µs) says whether one was registered since.
        self.hook_registries = [getattr(layer, name, {}) for layer in self for name in _HOOK_DICTS]
        self.hook_registries += _GLOBAL_HOOK_DICTS

    def forward(self, x: Tensor) -> Tensor:
        if self.hooked:
            return super().forward(x)
        for layer in self:
            x = (
                _stacked_linear(layer, x)
                if isinstance(layer, nn.Linear) and layer.weight.dim() == 3
                else layer.forward(x)
            )
        return x

    def with_latent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(the last layer's input, the output)``: gSDE's features φ(s) and the mean."""
        *body, last = self
        call = (lambda layer, x: layer(x)) if self.hooked else (lambda layer, x: layer.forward(x))
        for layer in body:
            x = call(layer, x)
        return x, call(last, x)

    @property
    def hooked(self) -> bool:
        """Whether a hook is registered on one of the layers, or on every module."""
        return any(self.hook_registries)


def _stacked_linear(layer: nn.Linear, x: Tensor) -> Tensor:
    """A Linear layer whose parameters are many seeds' stacked (``weight [S, out, in]``, ``bias [S, out]``,
    lent by ``functional_call``: :func:`pgrad.stack.stacked_call`) on ``x [S, B, in]``: every seed's
    x W_sᵀ + b_s in one batched product, the bias added inside it."""
    if layer.bias is None:
        return torch.bmm(x, layer.weight.transpose(-1, -2))
    return torch.baddbmm(layer.bias.unsqueeze(-2), x, layer.weight.transpose(-1, -2))


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOK_DICTS = [
    getattr(nn.modules.module, f"_global{name}", {}) for name in (*_HOOK_DICTS, "_forward_hooks_always_called")
]


class ResidualBlock(nn.Module):
    """SimBa's block: ``h + W₂ act(W₁ LayerNorm(h))``, W₁: w → 4w, W₂: 4w → w (a pre-LayerNorm
    residual feed-forward block with an inverted bottleneck)."""

    def __init__(self, width: int, activation: str):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.act = ACTIVATIONS[activation]()
        self.down = nn.Linear(4 * width, width)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.down(self.act(self.up(self.norm(h))))


def simba(in_dim: int, hidden_sizes: Sequence[int], out_dim: int | None, activation: str) -> MLP:
    """SimBa (Lee et al., *SimBa: Simplicity Bias for Scaling Up Parameters in Deep Reinforcement
    Learning*, ICLR 2025): ``Linear(in → w)``, one :class:`ResidualBlock` of width ``w`` per entry of
    ``hidden_sizes`` (all ``w``), a final LayerNorm, then ``Linear(w → out)`` (none for a torso). Its
    running observation normalisation is pgrad's ``normalize_obs``, which the config requires."""
    width = hidden_sizes[0]
    layers = [nn.Linear(in_dim, width), *(ResidualBlock(width, activation) for _ in hidden_sizes), nn.LayerNorm(width)]
    return MLP(*layers, *([nn.Linear(width, out_dim)] if out_dim is not None else []))


def mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    out_dim: int | None,
    activation: str = "tanh",
    out_gain: float = 1.0,
    hidden_gain: float = math.sqrt(2.0),
    network: str = "mlp",
) -> MLP:
    """``in_dim → hidden... → out_dim`` MLP, orthogonally initialised with zero biases.

    Hidden layers get gain √2 and the output layer ``out_gain`` (0.01 for a policy head and 1 for a
    value head: CHECKLIST item 8). ``out_dim=None`` ends at the last hidden layer (a torso).
    ``network="simba"``: :func:`simba`'s residual blocks, their linear layers initialised the same.
    """
    if network == "simba":
        net = simba(in_dim, hidden_sizes, out_dim, activation)
        for layer in net.modules():
            if isinstance(layer, nn.Linear):
                _init(layer, hidden_gain)
        if out_dim is not None:
            _init(net[-1], out_gain)
        return net
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [_init(nn.Linear(a, b), hidden_gain), ACTIVATIONS[activation]()]
    if out_dim is not None:
        layers.append(_init(nn.Linear(sizes[-1], out_dim), out_gain))
    return MLP(*layers)


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def observation_spec(layout: ObsLayout) -> dict | None:
    """What a network's ``spec`` records of its observations: None for a plain vector (no encoder)."""
    return {"space": space_to_json(layout.space), "images": layout.images} if needs_encoder(layout) else None


def encoder_from_spec(observation: dict | None) -> ObsEncoder | None:
    if observation is None:
        return None
    return ObsEncoder(ObsLayout(space_from_json(observation["space"]), observation["images"]))


AnyDistribution = Categorical | MultiCategorical | Bernoulli | DiagGaussian


class ActorCritic(nn.Module):
    """Policy π(a|s) and value V(s) for a Discrete, MultiDiscrete, MultiBinary or Box action space.

    ``shared=True`` puts both heads on one torso; the default keeps separate networks, which
    does better on simple tasks (CHECKLIST item 18). For Box actions the Gaussian's log-std is a
    state-independent parameter initialised to ``log_std_init`` (item 19), or, with
    ``state_dependent_std``, a second head of the policy network; with ``use_sde``, gSDE's
    :class:`~pgrad.distributions.StateDependentGaussian` on the policy's last hidden features, its
    log σ a ``[d, D]`` parameter (``[d, 1]`` unless ``full_std``). ``nvec`` makes the head a
    :class:`MultiCategorical`, ``binary`` a :class:`Bernoulli`.

    Observations other than a plain vector (``observation``: the space's JSON and the ``images``
    setting) go through one :class:`~pgrad.encoders.ObsEncoder` that both π and V read, as Atari
    PPO shares its CNN; its parameters count as the policy's, as a shared torso's do.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        discrete: bool,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        shared: bool = False,
        log_std_init: float = 0.0,
        state_dependent_std: bool = False,
        ortho_init: bool = True,
        nvec: list[int] | None = None,
        binary: bool = False,
        observation: dict | None = None,
        vf_hidden_sizes: Sequence[int] | None = None,
        use_sde: bool = False,
        full_std: bool = True,
        network: str = "mlp",
    ):
        super().__init__()
        encoder = encoder_from_spec(observation)
        if encoder is not None:
            self.encoder, obs_dim = encoder, encoder.out_dim
        self.spec = dict(
            obs_dim=obs_dim,
            action_dim=action_dim,
            discrete=discrete,
            hidden_sizes=list(hidden_sizes),
            activation=activation,
            shared=shared,
            log_std_init=log_std_init,
            state_dependent_std=state_dependent_std,
            ortho_init=ortho_init,
        )
        if vf_hidden_sizes is not None and list(vf_hidden_sizes) != list(hidden_sizes):  # SB3's net_arch pi ≠ vf
            if shared:
                raise ValueError("vf_hidden_sizes is invalid with shared_network=True (one torso for π and V)")
            self.spec["vf_hidden_sizes"] = list(vf_hidden_sizes)
        self.spec |= {k: v for k, v in (("nvec", nvec), ("binary", binary), ("observation", observation)) if v}
        self.spec |= {"network": network} if network != "mlp" else {}
        self.discrete, self.shared = discrete or bool(nvec) or binary, shared
        self.nvec, self.binary = nvec, binary
        self.state_dependent_std = state_dependent_std and not self.discrete
        self.use_sde = use_sde
        if use_sde:
            if self.discrete or state_dependent_std:
                raise ValueError(
                    "use_sde=True needs Box actions and a state-independent std (state_dependent_std=False)"
                )
            self.spec |= {"use_sde": True, "full_std": full_std}
        head_out = action_dim * (2 if self.state_dependent_std else 1)
        last = hidden_sizes[-1] if hidden_sizes else obs_dim
        if shared:
            self.torso = mlp(obs_dim, hidden_sizes, None, activation, network=network)
            self.policy_head = _init(nn.Linear(last, head_out), 0.01)
            self.value_head = _init(nn.Linear(last, 1), 1.0)
        else:
            self.policy_net = mlp(obs_dim, hidden_sizes, head_out, activation, out_gain=0.01, network=network)
            vf_sizes = self.spec.get("vf_hidden_sizes", hidden_sizes)
            self.value_net = mlp(obs_dim, vf_sizes, 1, activation, out_gain=1.0, network=network)
        if use_sde:  # log σ of θ_ε: one per (feature, action dim), or per feature
            self.log_std = nn.Parameter(torch.full((last, action_dim if full_std else 1), float(log_std_init)))
        elif not self.discrete and not self.state_dependent_std:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        if not ortho_init:
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    module.reset_parameters()
        if self.state_dependent_std:
            head = self.policy_head if shared else self.policy_net[-1]
            with torch.no_grad():
                head.bias[action_dim:] = log_std_init

    @classmethod
    def from_spec(cls, spec: dict) -> ActorCritic:
        return cls(**spec)

    def encode(self, obs: Tensor) -> Tensor:
        """The features both π and V read: the observation itself when it is a plain vector."""
        encoder = self._modules.get("encoder")
        return obs if encoder is None else encoder(obs)

    def policy_parameters(self) -> list[nn.Parameter]:
        """Parameters of π alone (a shared torso or encoder counts as the policy's)."""
        value_ids = {id(p) for p in (self.value_head if self.shared else self.value_net).parameters()}
        return [p for p in self.parameters() if id(p) not in value_ids]

    def value_parameters(self) -> list[nn.Parameter]:
        return list((self.value_head if self.shared else self.value_net).parameters())

    def _policy_out(self, obs: Tensor) -> Tensor:
        x = self.encode(obs)
        return self.policy_head(self.torso(x)) if self.shared else self.policy_net(x)

    def distribution(self, obs: Tensor) -> AnyDistribution:
        """π(·|s) for a batch of observations ``[B, obs_dim]``."""
        x = self.encode(obs)
        return self._pi(self.torso(x) if self.shared else x)

    def _pi(self, x: Tensor) -> AnyDistribution:
        """π(·|s) from the policy network's input ``x`` (the shared torso's output when shared)."""
        if self.shared:
            return self._head_to_distribution(self.policy_head(x), x)
        if self.use_sde:
            return self._head_to_distribution(*reversed(self.policy_net.with_latent(x)))
        return self._head_to_distribution(self.policy_net(x))

    def _head_to_distribution(self, out: Tensor, latent: Tensor | None = None) -> AnyDistribution:
        if self.use_sde:  # gSDE: the features φ(s) are the policy's last hidden layer
            return StateDependentGaussian.from_params(out, latent, self.log_std)
        if self.nvec:
            return MultiCategorical(out, self.nvec)
        if self.binary:
            return Bernoulli(out)
        if self.discrete:
            return Categorical(out)
        if self.state_dependent_std:
            mean, log_std = out.chunk(2, dim=-1)
            return DiagGaussian(mean, log_std.clamp(-20.0, 2.0))  # clamp as Spinning Up (item 36)
        return DiagGaussian(out, self.log_std)

    def value(self, obs: Tensor) -> Tensor:
        """V(s) ``[B]``."""
        x = self.encode(obs)
        if self.shared:
            return self.value_head(self.torso(x)).squeeze(-1)
        return self.value_net(x).squeeze(-1)

    def forward(self, obs: Tensor) -> tuple[AnyDistribution, Tensor]:
        """``(π(·|s), V(s))`` in one pass (the encoder and a shared torso run once)."""
        x = self.encode(obs)
        if self.shared:
            features = self.torso(x)
            return self._pi(features), self.value_head(features).squeeze(-1)
        return self._pi(x), self.value_net(x).squeeze(-1)

    def act(self, obs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Sample ``a ~ π(·|s)``: ``(actions, log π(a|s), V(s))`` for a batch ``[N, obs_dim]``."""
        dist, values = self(obs)
        actions = dist.sample(generator)
        return actions, dist.log_prob(actions), values

    @torch.no_grad()
    def predict(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        """Actions for acting: the mode when ``deterministic``, else a sample."""
        dist = self.distribution(obs)
        return dist.mode() if deterministic else dist.sample()

    def for_acting(self) -> ActorCritic | FusedActorCritic:
        """``(π_θ, V_θ)`` in the form that is cheapest on the small batches of acting, for the
        current θ: a :class:`FusedActorCritic` for separate networks up to ``FusedActorCritic.MAX_WIDTH``
        wide, else this module itself. Valid until θ changes (the on-policy loop takes one per
        rollout, whose θ_old is fixed). With a user's hook on a layer, or an encoder, this module
        itself (so hooks fire, and an encoder runs once for both)."""
        too_wide = max(self.spec["hidden_sizes"], default=0) > FusedActorCritic.MAX_WIDTH
        if (
            self.shared
            or self.use_sde  # its distribution needs the policy's features, not only the head
            or "network" in self.spec  # residual blocks, not a chain of linear layers
            or too_wide
            or "vf_hidden_sizes" in self.spec
            or "encoder" in self._modules
            or self.policy_net.hooked
            or self.value_net.hooked
        ):
            return self
        return FusedActorCritic(self)


class FusedActorCritic:
    """The separate policy and value networks of an :class:`ActorCritic` as one network, for acting.

    With ``W^π_k, W^V_k`` the k-th layers' weights, layer 1 stacks them, ``[W^π_1; W^V_1] s``, and
    every later layer is block-diagonal, ``diag(W^π_k, W^V_k)``, so one pass computes
    ``[π-head(s), V(s)]``: for 64-64 networks 5 operator calls instead of 10, 19-32 µs instead of
    44-56 µs a pass for 2-8 states, 94 vs 103 µs for 64 (one CPU thread). Acting is dispatch-bound,
    so the zero blocks' wasted products cost little up to ``MAX_WIDTH`` units; at 128-128 they do
    (53 vs 66 µs for 8 states but 209 vs 193 µs for 64). The outputs equal the separate networks'
    up to float rounding (~1e-7: the zero blocks change a matmul's summation).

    It holds a copy of θ from when it was built (~45 µs): build one per rollout, not per step.
    """

    MAX_WIDTH = 64

    def __init__(self, ac: ActorCritic):
        policy_layers = [m for m in ac.policy_net if isinstance(m, nn.Linear)]
        value_layers = [m for m in ac.value_net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            self.layers = [
                (
                    torch.cat([p.weight, v.weight]) if k == 0 else torch.block_diag(p.weight, v.weight),
                    torch.cat([p.bias, v.bias]),
                )
                for k, (p, v) in enumerate(zip(policy_layers, value_layers, strict=True))
            ]
        self.activation = ac.policy_net[1] if len(policy_layers) > 1 else None
        self.head_out = policy_layers[-1].out_features
        self.actor_critic = ac

    def _out(self, obs: Tensor) -> Tensor:
        x, last = obs, len(self.layers) - 1
        for k, (weight, bias) in enumerate(self.layers):
            x = nn.functional.linear(x, weight, bias)
            if k < last:
                x = self.activation.forward(x)
        return x

    def __call__(self, obs: Tensor) -> tuple[AnyDistribution, Tensor]:
        """``(π(·|s), V(s))``, as :meth:`ActorCritic.forward`."""
        out = self._out(obs)
        return self.actor_critic._head_to_distribution(out[:, : self.head_out]), out[:, self.head_out]

    def value(self, obs: Tensor) -> Tensor:
        """V(s) ``[B]``."""
        return self._out(obs)[:, self.head_out]


class RecurrentActorCritic(ActorCritic):
    """An :class:`ActorCritic` with a recurrent core (LSTM or GRU) between the encoder and the MLPs:
    π(a_t | h_t), V(h_t) with h_t = RNN(x_t, h_{t−1}), x_t the (encoded) observation and h reset to 0
    at each episode's start. As sb3-contrib's RecurrentActorCriticPolicy: ``rnn_shared=False`` gives
    the critic its own RNN; ``True`` lets V read the actor's core output, detached, so only π's loss
    trains the core. The MLPs (``hidden_sizes``) and heads are :class:`ActorCritic`'s, on the core's
    ``rnn_hidden_size`` outputs.

    The recurrent state of a batch of ``B`` envs is one tensor ``[B, K, rnn_hidden_size]``: for each
    core (π's, then V's when separate) its ``rnn_layers`` rows of h, then, for an LSTM, as many of c.
    Batch-first, so a rollout stores it per env and a worker's slice of envs is a slice of it.
    """

    recurrent = True

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        discrete: bool,
        rnn: str = "lstm",
        rnn_hidden_size: int = 256,
        rnn_layers: int = 1,
        rnn_shared: bool = False,
        observation: dict | None = None,
        ortho_init: bool = True,
        **kwargs,
    ):
        if kwargs.get("shared"):
            raise ValueError("shared_network=True is invalid with a recurrent policy: use rnn_shared to share the core")
        super().__init__(rnn_hidden_size, action_dim, discrete, ortho_init=ortho_init, **kwargs)
        encoder = encoder_from_spec(observation)
        if encoder is not None:
            self.encoder, obs_dim = encoder, encoder.out_dim
        self.spec |= dict(obs_dim=obs_dim, rnn=rnn, rnn_hidden_size=rnn_hidden_size, rnn_layers=rnn_layers,
                          rnn_shared=rnn_shared)  # fmt: skip
        if observation:
            self.spec["observation"] = observation
        cell = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn]
        self.lstm = rnn == "lstm"
        self.layers, self.rnn_shared = rnn_layers, rnn_shared
        self.rnn_pi = cell(obs_dim, rnn_hidden_size, rnn_layers)
        if not rnn_shared:
            self.rnn_vf = cell(obs_dim, rnn_hidden_size, rnn_layers)
        if ortho_init:  # CleanRL's LSTM init: orthogonal weights (gain 1), zero biases
            for core in self.cores:
                for name, p in core.named_parameters():
                    nn.init.orthogonal_(p, 1.0) if name.startswith("weight") else nn.init.zeros_(p)
        self.state_rows = len(self.cores) * rnn_layers * (2 if self.lstm else 1)

    @property
    def cores(self) -> list[nn.Module]:
        return [self.rnn_pi] if self.rnn_shared else [self.rnn_pi, self.rnn_vf]

    def value_parameters(self) -> list[nn.Parameter]:
        own = [] if self.rnn_shared else list(self.rnn_vf.parameters())
        return own + list(self.value_net.parameters())

    def initial_state(self, batch: int) -> Tensor:
        """The state of ``batch`` envs at an episode's start: zeros ``[batch, K, H]``."""
        return torch.zeros(batch, self.state_rows, self.spec["rnn_hidden_size"], device=self.rnn_pi.weight_ih_l0.device)

    def _split(self, state: Tensor) -> list:
        """The batch-first state ``[B, K, H]`` as each core's hidden input (``[layers, B, H]``, an
        LSTM's as the pair (h, c))."""
        rows = state.transpose(0, 1)
        per_core = rows.chunk(len(self.cores))
        if self.lstm:
            return [tuple(x.contiguous() for x in core.chunk(2)) for core in per_core]
        return [core.contiguous() for core in per_core]

    def _join(self, hidden: list) -> Tensor:
        rows = [torch.cat(h) if self.lstm else h for h in hidden]
        return torch.cat(rows).transpose(0, 1)

    def unroll(self, obs: Tensor, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Run the cores over ``L`` steps of ``B`` sequences (``obs [L, B, ...]``) from ``state``
        ``[B, K, H]`` with no reset inside: ``(π's latent [L, B, H], V's latent [L, B, H], final state)``."""
        length, batch = obs.shape[:2]
        x = self.encode(obs.flatten(0, 1)).unflatten(0, (length, batch))
        hidden = self._split(state)
        latent_pi, h_pi = self.rnn_pi(x, hidden[0])
        if self.rnn_shared:
            return latent_pi, latent_pi.detach(), self._join([h_pi])
        latent_vf, h_vf = self.rnn_vf(x, hidden[1])
        return latent_pi, latent_vf, self._join([h_pi, h_vf])

    def heads(self, latent_pi: Tensor, latent_vf: Tensor) -> tuple[AnyDistribution, Tensor]:
        return self._pi(latent_pi), self.value_net(latent_vf).squeeze(-1)

    def step(self, obs: Tensor, state: Tensor) -> tuple[AnyDistribution, Tensor, Tensor]:
        """One step of ``B`` envs from their states (already reset where an episode starts):
        ``(π(·|h_t), V(h_t), the next state)``."""
        latent_pi, latent_vf, state = self.unroll(obs.unsqueeze(0), state)
        dist, values = self.heads(latent_pi[0], latent_vf[0])
        return dist, values, state

    def step_value(self, obs: Tensor, state: Tensor) -> Tensor:
        """V of ``obs`` seen from ``state`` (a bootstrap value), the state itself left as it is."""
        return self.step(obs, state)[1]

    def sequences(self, obs: Tensor, state: Tensor, mask: Tensor) -> tuple[AnyDistribution, Tensor]:
        """π and V at the valid steps (``mask [L, B]``, in ``mask``'s row-major order) of ``B``
        padded sequences ``obs [L, B, ...]`` starting from ``state [B, K, H]``."""
        latent_pi, latent_vf, _ = self.unroll(obs, state)
        return self.heads(latent_pi[mask], latent_vf[mask])

    def forward(self, obs: Tensor) -> tuple[AnyDistribution, Tensor]:
        raise TypeError("a recurrent policy acts from a state: use step(obs, state) or sequences(...)")

    distribution = value = forward  # neither exists without a state

    @torch.no_grad()
    def predict(self, obs: Tensor, state: Tensor, deterministic: bool = True) -> tuple[Tensor, Tensor]:
        """``(actions, next state)`` for ``B`` envs from their (reset) states."""
        dist, _, state = self.step(obs, state)
        return (dist.mode() if deterministic else dist.sample()), state

    def for_acting(self) -> RecurrentActorCritic:
        return self


def reset_where(state: Tensor, starts: Tensor) -> Tensor:
    """``state`` with the rows of envs whose episode starts here (``starts [B]`` bool) set to 0."""
    return state * (~starts).to(state.dtype)[:, None, None]


def evaluate_batch(
    policy: ActorCritic, obs: Tensor, states: Tensor | None, batch
) -> tuple[AnyDistribution, Tensor, Tensor | slice]:
    """π and V on a minibatch of a rollout's flat samples ``obs [T·N, ...]``: ``batch`` is an index
    (or slice) for a feed-forward policy, a :class:`~pgrad.buffers.Sequences` for a recurrent one,
    whose recurrence restarts at each sequence's first step from the stored ``states [T·N, K, H]``.
    Returns ``(π, V, the samples' flat index)``, the outputs in that index's order."""
    if isinstance(batch, Sequences):
        dist, values = policy.sequences(obs[batch.index], states[batch.first], batch.mask)
        return dist, values, batch.samples
    dist, values = policy(obs[batch])
    return dist, values, batch


def evaluate_rollout(policy: ActorCritic, buf) -> tuple[AnyDistribution, Tensor]:
    """π and V at every sample of a rollout buffer, in its flat ``t·N + n`` order (a recurrent
    policy's re-run over all its sequences at once)."""
    obs = buf.obs.flatten(0, 1)
    if not buf.recurrent:
        return policy(obs)
    T, N = buf.episode_starts.shape
    batch = next(sequence_minibatches(buf.episode_starts, T * N, None, buf.device))
    dist, values, samples = evaluate_batch(policy, obs, buf.states.flatten(0, 1), batch)
    position = torch.empty_like(samples)
    position[samples] = torch.arange(len(samples), device=samples.device)  # where each sample's output is
    return dist[position], values[position]


def actor_critic_for(cfg, observation_space, action_space) -> ActorCritic:
    """The actor-critic an on-policy config asks for (``OnPolicyConfig`` fields) on these spaces."""
    obs_dim, observation = observation_for(cfg, observation_space)
    recurrent = getattr(cfg, "rnn", "none") != "none"
    extra = dict(rnn=cfg.rnn, rnn_hidden_size=cfg.rnn_hidden_size, rnn_layers=cfg.rnn_layers,
                 rnn_shared=cfg.rnn_shared) if recurrent else {}  # fmt: skip
    if getattr(cfg, "use_sde", False):
        extra |= {"use_sde": True, "full_std": cfg.full_std}
    return (RecurrentActorCritic if recurrent else ActorCritic)(
        **extra,
        obs_dim=obs_dim,
        observation=observation,
        **action_head(action_space),
        hidden_sizes=cfg.hidden_sizes,
        vf_hidden_sizes=cfg.vf_hidden_sizes,
        activation=cfg.activation,
        shared=cfg.shared_network,
        log_std_init=cfg.log_std_init,
        state_dependent_std=cfg.state_dependent_std,
        ortho_init=cfg.ortho_init,
        network=cfg.network,
    )


def observation_for(cfg, observation_space: gym.Space) -> tuple[int, dict | None]:
    """``(obs_dim, observation)`` for a network on ``observation_space``: the vector's size and no
    encoder for a plain vector, else the stored size and the encoder's spec."""
    layout = ObsLayout(observation_space, cfg.images)
    return int(np.prod(layout.shape)), observation_spec(layout)


def fit_value(
    value_fn,
    optimizer: torch.optim.Optimizer,
    obs: Tensor,
    targets: Tensor,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
) -> Tensor:
    """Regress V(s) on fixed targets: ``epochs`` passes of shuffled minibatches, loss (V − target)².

    Returns the mean loss of the last epoch (a tensor, so callers choose when to sync).
    """
    n = obs.shape[0]
    losses = []
    for _epoch in range(epochs):
        losses = []
        for idx in minibatches(n, batch_size, generator, obs.device):
            loss = (value_fn(obs[idx]) - targets[idx]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
    return torch.stack(losses).mean()


# ---- off-policy networks (DDPG, TD3, SAC). Default PyTorch init and ReLU, as SB3/the papers. ----


class BatchRenorm(nn.Module):
    """Batch Renormalization (Ioffe, NeurIPS 2017), as CrossQ's critics and actor use it.

    Training mode, on a batch with mean μ_B and std σ_B (running μ, σ):
        x̂ = (x − μ_B) / σ_B · r + d,   r = clip(σ_B / σ, 1/r_max, r_max),  d = clip((μ_B − μ) / σ, ±d_max)
    with r and d treated as constants (no gradient), r = 1 and d = 0 for the first ``warmup_steps``
    batches (plain batch norm); then μ ← μ + m (μ_B − μ), σ² ← σ² + m (σ_B² − σ²). Evaluation mode:
    x̂ = (x − μ) / σ. Output γ x̂ + β. The running statistics and the batch count are buffers: saved
    with the weights, restored by a checkpoint.
    """

    R_MAX, D_MAX = 3.0, 5.0

    def __init__(self, features: int, momentum: float = 0.01, eps: float = 1e-3, warmup_steps: int = 100_000):
        super().__init__()
        self.momentum, self.eps, self.warmup_steps = momentum, eps, warmup_steps
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            x_hat = (x - self.running_mean) / (self.running_var + self.eps).sqrt()
            return self.weight * x_hat + self.bias
        mean, var = x.mean(0), x.var(0, unbiased=False)
        std = (var + self.eps).sqrt()
        x_hat = (x - mean) / std
        if int(self.steps) >= self.warmup_steps:
            running_std = (self.running_var + self.eps).sqrt()
            r = (std / running_std).detach().clamp(1 / self.R_MAX, self.R_MAX)
            d = ((mean - self.running_mean) / running_std).detach().clamp(-self.D_MAX, self.D_MAX)
            x_hat = x_hat * r + d
        with torch.no_grad():
            self.running_mean += self.momentum * (mean - self.running_mean)
            self.running_var += self.momentum * (var - self.running_var)
            self.steps += 1
        return self.weight * x_hat + self.bias


def plain_mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    out_dim: int,
    activation: str = "relu",
    layer_norm: bool = False,
    dropout: float = 0.0,
    batch_renorm: dict | None = None,
    network: str = "mlp",
) -> MLP:
    """An MLP with PyTorch's default initialisation; each hidden layer Linear → [Dropout] →
    [LayerNorm] → activation (DroQ's order, Hiraoka et al. 2022). ``batch_renorm`` (BatchRenorm's
    keyword arguments) puts a BatchRenorm before every Linear, the first and the last included
    (CrossQ's layout, as sb3-contrib's). ``network="simba"``: :func:`simba` instead."""
    if network == "simba":
        return simba(in_dim, hidden_sizes, out_dim, activation)
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [BatchRenorm(a, **batch_renorm)] if batch_renorm is not None else []
        layers.append(nn.Linear(a, b))
        layers += [nn.Dropout(dropout)] if dropout > 0 else []
        layers += [nn.LayerNorm(b)] if layer_norm else []
        layers.append(ACTIVATIONS[activation]())
    layers += [BatchRenorm(sizes[-1], **batch_renorm)] if batch_renorm is not None else []
    layers.append(nn.Linear(sizes[-1], out_dim))
    return MLP(*layers)


class Encoded(nn.Module):
    """An off-policy network with its own observation encoder (each network has one: separate
    CNNs for the actor and each critic, as SB3's off-policy policies default to)."""

    def _encoder(self, obs_dim: int, observation: dict | None) -> int:
        """Build ``self.encoder`` from ``observation``; the width the MLP after it takes."""
        encoder = encoder_from_spec(observation)
        if encoder is None:
            return obs_dim
        self.encoder = encoder
        return encoder.out_dim

    def encode(self, obs: Tensor) -> Tensor:
        encoder = self._modules.get("encoder")
        return obs if encoder is None else encoder(obs)


def _spec(
    obs_dim: int, action_dim: int, hidden_sizes: Sequence[int], observation: dict | None, activation: str = "relu"
) -> dict:
    spec = dict(obs_dim=obs_dim, action_dim=action_dim, hidden_sizes=list(hidden_sizes))
    spec |= {"activation": activation} if activation != "relu" else {}  # (older agents: ReLU, unrecorded)
    return spec | ({"observation": observation} if observation else {})


class QEnsemble(nn.Module):
    """``k`` independent critics Q_1..Q_k(s, a), evaluated together: ``[k, B]``; or, for a Discrete
    space, Q_i(s, ·) over all actions, ``[k, B, A]`` (SAC-discrete).

    The action is concatenated at the input (TD3-style, CHECKLIST item 33). The members run one
    after another: stacking their weights into one batched matmul per layer (``baddbmm``) measured
    no faster on a CPU (2.26 ms vs 2.27 ms forward + backward of two 256×256 layers at B = 256).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int],
        k: int = 2,
        discrete: bool = False,
        observation: dict | None = None,
        activation: str = "relu",
        layer_norm: bool = False,
        dropout: float = 0.0,
        batch_renorm: dict | None = None,
        network: str = "mlp",
    ):
        super().__init__()
        self.discrete = discrete
        if observation is not None:  # one encoder per critic
            self.encoders = nn.ModuleList(encoder_from_spec(observation) for _ in range(k))
            obs_dim = self.encoders[0].out_dim
        in_dim, out_dim = (obs_dim, action_dim) if discrete else (obs_dim + action_dim, 1)
        self.members = nn.ModuleList(
            plain_mlp(in_dim, hidden_sizes, out_dim, activation, layer_norm, dropout, batch_renorm, network)
            for _ in range(k)
        )

    def _input(self, obs: Tensor, actions: Tensor | None, i: int) -> Tensor:
        encoders = self._modules.get("encoders")
        if encoders is not None:
            obs = encoders[i](obs)
        return obs if self.discrete else torch.cat([obs, actions], dim=-1)

    def _output(self, out: Tensor) -> Tensor:
        return out if self.discrete else out.squeeze(-1)  # [.., B], never [.., B, 1] (item 7)

    def forward(self, obs: Tensor, actions: Tensor | None = None) -> Tensor:
        """All k critics: ``[k, B]`` (``[k, B, A]`` for a Discrete space)."""
        if "encoders" not in self._modules:
            x = self._input(obs, actions, 0)
            return self._output(torch.stack([net(x) for net in self.members]))
        return self._output(torch.stack([net(self._input(obs, actions, i)) for i, net in enumerate(self.members)]))

    def member(self, i: int, obs: Tensor, actions: Tensor | None = None) -> Tensor:
        """Q_i alone (TD3's actor follows Q_1 only), without computing the others."""
        return self._output(self.members[i](self._input(obs, actions, i)))


class VNetwork(Encoded):
    """V(s) ``[B]`` (SAC v1's soft value network)."""

    def __init__(
        self,
        obs_dim: int,
        hidden_sizes: Sequence[int],
        observation: dict | None = None,
        activation: str = "relu",
        network: str = "mlp",
    ):
        super().__init__()
        self.net = plain_mlp(self._encoder(obs_dim, observation), hidden_sizes, 1, activation, network=network)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(self.encode(obs)).squeeze(-1)


class Actor(Encoded):
    """An off-policy actor: an MLP from the (encoded) observation to ``OUTPUTS`` numbers per action
    dimension; ``spec`` is what a saved agent rebuilds it from."""

    OUTPUTS = 1

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int],
        observation: dict | None = None,
        activation: str = "relu",
        batch_renorm: dict | None = None,
        network: str = "mlp",
        outputs_per_dim: int | None = None,
    ):
        super().__init__()
        self.spec = _spec(obs_dim, action_dim, hidden_sizes, observation, activation)
        self.spec |= {"batch_renorm": batch_renorm} if batch_renorm is not None else {}
        self.spec |= {"network": network} if network != "mlp" else {}
        in_dim, outputs = self._encoder(obs_dim, observation), (outputs_per_dim or self.OUTPUTS) * action_dim
        self.net = plain_mlp(in_dim, hidden_sizes, outputs, activation, batch_renorm=batch_renorm, network=network)
        self.latent_dim = hidden_sizes[-1] if hidden_sizes else in_dim  # the last hidden layer's width

    @classmethod
    def from_spec(cls, spec: dict) -> Actor:
        return cls(**spec)


class DeterministicActor(Actor):
    """μ(s) = tanh(MLP(s)) in [−1, 1]^D (rescaled to the Box bounds by the env's action map)."""

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(self.encode(obs)))

    @torch.no_grad()
    def predict(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self(obs)


class SquashedGaussianActor(Actor):
    """π(·|s) = tanh(N(μ(s), σ(s)²)): state-dependent log-std clamped to [−20, 2] (item 36).

    With ``use_sde`` (SB3's SAC with gSDE): tanh of a :class:`StateDependentGaussian` on the last
    hidden features φ(s), which it trains (``learn_features``), log σ a ``[d, D]`` parameter from
    ``log_std_init``, and μ clipped to [−2, 2] before the squash (SB3's ``clip_mean``)."""

    OUTPUTS = 2  # μ and log σ
    CLIP_MEAN = 2.0

    def __init__(self, *args, use_sde: bool = False, full_std: bool = True, log_std_init: float = -3.0, **kwargs):
        super().__init__(*args, **kwargs, outputs_per_dim=1 if use_sde else 2)
        self.use_sde = use_sde
        if use_sde:
            self.spec |= {"use_sde": True, "full_std": full_std, "log_std_init": log_std_init}
            columns = self.spec["action_dim"] if full_std else 1
            self.log_std = nn.Parameter(torch.full((self.latent_dim, columns), float(log_std_init)))

    def forward(self, obs: Tensor) -> TanhGaussian:
        if self.use_sde:
            latent, mean = self.net.with_latent(self.encode(obs))
            mean = mean.clamp(-self.CLIP_MEAN, self.CLIP_MEAN)
            return TanhGaussian.squashing(StateDependentGaussian.from_params(mean, latent, self.log_std, True))
        mean, log_std = self.net(self.encode(obs)).chunk(2, dim=-1)
        return TanhGaussian(mean, log_std.clamp(-20.0, 2.0))

    @torch.no_grad()
    def predict(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        dist = self(obs)
        return dist.mode() if deterministic else dist.sample()  # tanh(μ) when deterministic (item 40)


class CategoricalActor(Actor):
    """π(·|s) = softmax(MLP(s)) over a Discrete space (SAC-discrete)."""

    def forward(self, obs: Tensor) -> Categorical:
        return Categorical(self.net(self.encode(obs)))

    @torch.no_grad()
    def predict(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        dist = self(obs)
        return dist.mode() if deterministic else dist.sample()


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """No gradient reaches these modules inside the block (the critics during the actor's loss)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging θ' ← τθ + (1 − τ)θ' over all parameters (:func:`polyak_`)."""
    polyak_(list(target.parameters()), list(source.parameters()), tau)


@torch.no_grad()
def polyak_(targets: list[Tensor], sources: list[Tensor], tau: float) -> None:
    """θ' ← τθ + (1 − τ)θ' for each pair, in one fused op (per tensor on a torch without the
    private ``_foreach_lerp_``: the same numbers)."""
    lerp = getattr(torch, "_foreach_lerp_", None)
    if lerp is not None:
        lerp(targets, sources, tau)
        return
    for t, s in zip(targets, sources, strict=True):
        t.lerp_(s, tau)


@torch.no_grad()
def hard_update(target: nn.Module, source: nn.Module) -> None:
    """θ' ← θ."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.copy_(s)

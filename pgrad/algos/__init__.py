"""The algorithm registry: name → (config class, algorithm class, loop kind)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pgrad.algos.actor_critic import A2C, A2CConfig, A3CConfig, ActorCriticConfig
from pgrad.algos.crossq import CrossQ, CrossQConfig
from pgrad.algos.ddpg import DDPG, DDPGConfig
from pgrad.algos.npg import NPG, NPGConfig
from pgrad.algos.ppo import PPO, PPOConfig
from pgrad.algos.reinforce import Reinforce, ReinforceConfig
from pgrad.algos.sac import SAC, SACConfig, SACDiscrete, SACDiscreteConfig
from pgrad.algos.td3 import TD3, TD3Config
from pgrad.algos.trpo import TRPO, TRPOConfig
from pgrad.config import RunConfig


@dataclass(frozen=True)
class AlgoEntry:
    name: str
    config_class: type[RunConfig]
    algo_class: type
    loop: str  # "on_policy" (T × N rollouts) | "episodes" (whole episodes) | "off_policy" (replay)
    summary: str
    actions: tuple[str, ...] = ("Discrete", "MultiDiscrete", "MultiBinary", "Box")  # the action spaces it takes


# what every algorithm observes (pgrad.spaces lays each out, pgrad.encoders reads it)
OBSERVATIONS = "Box (any shape; 3-dim uint8: an image), Discrete, MultiDiscrete, MultiBinary, Dict/Tuple of them"


ALGORITHMS: dict[str, AlgoEntry] = {
    "reinforce": AlgoEntry(
        "reinforce",
        ReinforceConfig,
        Reinforce,
        "episodes",
        "REINFORCE: (1/M) Σ_i Σ_t ∇log π(a_t|s_t)·(G − b), options: baseline, reward-to-go, γ^t",
    ),
    "actor_critic": AlgoEntry(
        "actor_critic",
        ActorCriticConfig,
        A2C,
        "on_policy",
        "one-step actor-critic: ∇log π(a|s)·δ, δ = r + γV(s') − V(s), an update every vector step",
    ),
    "a2c": AlgoEntry(
        "a2c",
        A2CConfig,
        A2C,
        "on_policy",
        "A2C: ∇log π(a|s)·(R^(n) − V(s)), n-step returns (or GAE) from parallel envs, RMSprop; --rnn lstm|gru",
    ),
    "a3c": AlgoEntry(
        "a3c",
        A3CConfig,
        A2C,
        "async",
        "A3C: A2C's n-step gradient ∇log π(a|s)·(R^(n) − V(s)) computed by asynchronous Ray workers on their own envs, applied as it arrives",
    ),
    "ppo": AlgoEntry(
        "ppo",
        PPOConfig,
        PPO,
        "on_policy",
        "PPO-clip: max E[min(r·A, clip(r, 1±ε)·A)], GAE advantages; --rnn lstm|gru: recurrent policy",
    ),
    "npg": AlgoEntry(
        "npg",
        NPGConfig,
        NPG,
        "on_policy",
        "natural gradient: θ += α F⁻¹∇L, α = √(2δ / ∇Lᵀ F⁻¹ ∇L), no line search",
    ),
    "trpo": AlgoEntry(
        "trpo",
        TRPOConfig,
        TRPO,
        "on_policy",
        "trust region: natural step + backtracking until exact KL ≤ δ and L improves",
    ),
    "ddpg": AlgoEntry(
        "ddpg",
        DDPGConfig,
        DDPG,
        "off_policy",
        "DDPG: Q(s,a) → r + γQ'(s', μ'(s')); μ ascends Q(s, μ(s)); noise",
        ("Box",),
    ),
    "td3": AlgoEntry(
        "td3", TD3Config, TD3, "off_policy", "TD3: DDPG + clipped double Q, target smoothing, delayed actor", ("Box",)
    ),
    "sac": AlgoEntry(
        "sac",
        SACConfig,
        SAC,
        "off_policy",
        "SAC: soft Q with min of twins, tanh-Gaussian π by reparameterisation; v1 (V net, fixed α) or v2 (auto α)",
        ("Box",),
    ),
    "sac-discrete": AlgoEntry(
        "sac-discrete",
        SACDiscreteConfig,
        SACDiscrete,
        "off_policy",
        "SAC for Discrete actions: expectations over actions in closed form, auto α",
        ("Discrete",),
    ),
    "crossq": AlgoEntry(
        "crossq",
        CrossQConfig,
        CrossQ,
        "off_policy",
        "CrossQ: SAC without target networks, BatchRenorm critics on [s; s'] jointly, wide critics (2024)",
        ("Box",),
    ),
}


# Options beyond the notes that change a network or the exploration: (flag, what it is, the fields
# that switch it on). Which algorithms take one is what their configs accept (`takes`), so the list
# cannot drift from the validation.
OPTIONS = (
    ("--rnn lstm|gru", "recurrent policy (LSTM/GRU core; sb3-contrib's RecurrentPPO)", {"rnn": "lstm"}),
    ("--use-sde", "gSDE: state-dependent exploration noise held for sde_sample_freq steps", {"use_sde": True}),
    (
        "--network simba",
        "SimBa residual blocks (with --normalize-obs)",
        {"network": "simba", "normalize_obs": True, "hidden_sizes": (256, 256)},
    ),  # fmt: skip
)


def takes(entry: AlgoEntry, fields: dict) -> bool:
    """Whether ``entry``'s config accepts these field values."""
    try:
        entry.config_class(**fields)
    except (TypeError, ValueError):
        return False
    return True


def get_algo(name: str) -> AlgoEntry:
    """The registry entry for ``name`` (``-`` and ``_`` alike); a ValueError suggests close names otherwise."""
    key = str(name).lower()
    for candidate in (key, key.replace("-", "_"), key.replace("_", "-")):
        if candidate in ALGORITHMS:
            return ALGORITHMS[candidate]
    close = difflib.get_close_matches(key, list(ALGORITHMS), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(ALGORITHMS)}.{hint}")

"""The algorithm registry: name → (config class, algorithm class, loop kind)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pgrad.algos.npg import NPG, NPGConfig
from pgrad.algos.ppo import PPO, PPOConfig
from pgrad.algos.trpo import TRPO, TRPOConfig
from pgrad.config import RunConfig


@dataclass(frozen=True)
class AlgoEntry:
    name: str
    config_class: type[RunConfig]
    algo_class: type
    loop: str  # "on_policy" | "off_policy"
    summary: str


ALGORITHMS: dict[str, AlgoEntry] = {
    "ppo": AlgoEntry(
        "ppo",
        PPOConfig,
        PPO,
        "on_policy",
        "PPO-clip: max E[min(r·A, clip(r, 1±ε)·A)], GAE advantages",
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
}


def get_algo(name: str) -> AlgoEntry:
    """The registry entry for ``name``; a ValueError suggests close names otherwise."""
    key = name.lower().replace("_", "-") if isinstance(name, str) else name
    if key in ALGORITHMS:
        return ALGORITHMS[key]
    close = difflib.get_close_matches(str(name).lower(), list(ALGORITHMS), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(ALGORITHMS)}.{hint}")

"""``pgrad.train``: resolve a config (defaults ← preset ← user), run it, save and evaluate the agent."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import json
import random
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import tomllib
import torch
from rich.console import Console
from rich.table import Table

from pgrad.agent import Agent
from pgrad.algos import get_algo
from pgrad.algos.base import run_episodes, run_off_policy, run_on_policy
from pgrad.config import RunConfig, to_jsonable
from pgrad.envs import check_env_id, make_vec_env
from pgrad.evaluation import EvalResult, evaluate
from pgrad.logging import RunLogger


def load_presets() -> dict[str, dict[str, dict[str, Any]]]:
    """``{algo: {env_id: {field: value}}}`` from the package's ``presets.toml``."""
    text = resources.files("pgrad").joinpath("presets.toml").read_text()
    return tomllib.loads(text)


def resolve_config(
    algo: str, env: str, preset: str = "auto", overrides: dict[str, Any] | None = None
) -> tuple[RunConfig, dict[str, str], str | None]:
    """Build the config: plain defaults, then the (algo, env) preset unless ``preset="none"``,
    then ``overrides``. Returns ``(config, source of each field, preset name or None)``."""
    entry = get_algo(algo)
    check_env_id(env)
    if preset not in ("auto", "none"):
        raise ValueError(f"preset={preset!r} is invalid: must be 'auto' (the tuned preset if one exists) or 'none'")
    fields = {f.name for f in dataclasses.fields(entry.config_class)}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - fields)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(fields), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown {entry.name} config field {unknown[0]!r}.{hint} Fields: {', '.join(sorted(fields))}")
    preset_values = load_presets().get(entry.name, {}).get(env, {}) if preset == "auto" else {}
    values: dict[str, Any] = {"env": env}
    sources = {name: "default" for name in fields}
    sources["env"] = "user"
    for source, layer in (("preset", preset_values), ("user", overrides)):
        for key, value in layer.items():
            values[key] = tuple(value) if isinstance(value, list) else value
            sources[key] = source
    config = entry.config_class(**values)
    return config, sources, f"{entry.name}/{env}" if preset_values else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' is invalid here: torch sees no CUDA device (use 'cpu' or 'auto')")
    return torch.device(device)


def prepare_run_dir(algo: str, cfg: RunConfig) -> Path:
    if cfg.run_dir is not None:
        run_dir = Path(cfg.run_dir)
    else:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{algo}-{cfg.env}-{cfg.seed}-{stamp}"
    if run_dir.exists() and any(run_dir.iterdir()) and not cfg.overwrite:
        raise FileExistsError(
            f"run directory {str(run_dir)!r} already exists and is not empty; pass --overwrite "
            "(overwrite=True) to reuse it, or choose another --run-dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def run(algo: str, cfg: RunConfig, sources: dict[str, str] | None = None, preset: str | None = None) -> Agent:
    """Train ``algo`` with a resolved config; writes the run directory and returns the agent."""
    entry = get_algo(algo)
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    run_dir = prepare_run_dir(entry.name, cfg)
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "algo": entry.name,
                "config": to_jsonable(cfg),
                "sources": sources or {},
                "preset": preset,
                "versions": {"torch": torch.__version__, "gymnasium": gym.__version__},
            },
            indent=2,
        )
    )
    env = make_vec_env(
        cfg.env,
        cfg.n_envs,
        cfg.seed,
        cfg.vectorization,
        normalize_obs=cfg.normalize_obs,
        normalize_reward=cfg.normalize_reward,
        gamma=getattr(cfg, "gamma", 0.99),
        action_mode=getattr(entry.algo_class, "action_mode", "clip"),
    )
    algorithm = entry.algo_class(cfg, env.observation_space, env.action_space, device)
    agent = Agent(
        entry.name,
        cfg.env,
        algorithm.policy,
        env.observation_space,
        env.action_space,
        env.normalizer,
        getattr(entry.algo_class, "action_mode", "clip"),
        to_jsonable(cfg),
    )
    agent.run_dir = run_dir
    console = Console(stderr=True)
    next_eval = cfg.eval_every or None
    next_checkpoint = cfg.checkpoint_every or None

    with RunLogger(run_dir, cfg.total_steps, cfg.tensorboard, cfg.progress_bar) as logger:
        updates = 0

        def on_update(global_step: int, metrics: dict[str, float]) -> None:
            nonlocal next_eval, next_checkpoint, updates
            updates += 1
            if updates % cfg.log_interval == 0 or global_step >= cfg.total_steps:
                logger.log(global_step, metrics)
            if next_eval is not None and global_step >= next_eval:
                result = evaluate(agent, cfg.eval_episodes or 10, cfg.seed)
                logger.log_eval(global_step, result.mean, result.std)
                next_eval += cfg.eval_every
            if next_checkpoint is not None and global_step >= next_checkpoint:
                agent.save(run_dir)
                next_checkpoint += cfg.checkpoint_every

        try:
            if entry.loop == "episodes":
                steps = run_episodes(algorithm, env, cfg.episodes_per_update, cfg.total_steps, device, on_update)
            elif entry.loop == "off_policy":
                steps = run_off_policy(algorithm, env, cfg, device, on_update)
            else:
                steps = run_on_policy(algorithm, env, cfg.n_steps, cfg.total_steps, device, on_update)
        except KeyboardInterrupt:
            agent.save(run_dir)
            console.print(f"[yellow]interrupted: the agent so far is saved in {run_dir}[/]")
            raise
        finally:
            env.close()
        elapsed = logger.elapsed
    agent.save(run_dir)

    agent.evaluation = None
    if cfg.eval_episodes > 0:
        agent.evaluation = evaluate(agent, cfg.eval_episodes, cfg.seed)
        (run_dir / "eval.json").write_text(json.dumps(agent.evaluation.to_json(), indent=2))
    from pgrad.plotting import plot_runs

    plot_runs([run_dir], run_dir / "curve.png", title=f"{entry.name} on {cfg.env} (seed {cfg.seed})")
    if cfg.progress_bar:
        print_summary(console, entry.name, cfg, steps, elapsed, agent.evaluation, run_dir)
    return agent


def print_summary(
    console: Console, algo: str, cfg: RunConfig, steps: int, elapsed: float, result: EvalResult | None, run_dir: Path
) -> None:
    table = Table(title=f"pgrad {algo} on {cfg.env}", show_header=False)
    table.add_row("steps", f"{steps:,}")
    table.add_row("wall time", f"{elapsed:.1f} s ({steps / elapsed:,.0f} steps/s)")
    if result is not None:
        table.add_row(f"eval ({len(result.returns)} episodes, deterministic)", f"{result.mean:.1f} ± {result.std:.1f}")
    table.add_row("run directory", str(run_dir))
    console.print(table)


def train(
    algo: str,
    env: str = "CartPole-v1",
    total_steps: int | None = None,
    seed: int | None = None,
    preset: str = "auto",
    **fields: Any,
) -> Agent:
    """Train and return an :class:`Agent`; ``fields`` are config fields of ``algo`` (SB3 names).

    The (algo, env) preset applies unless ``preset="none"``; explicit arguments override it.
    ``agent.run_dir`` is the run directory, ``agent.evaluation`` the final evaluation.
    """
    overrides = dict(fields)
    if total_steps is not None:
        overrides["total_steps"] = total_steps
    if seed is not None:
        overrides["seed"] = seed
    overrides.setdefault("progress_bar", False)
    cfg, sources, preset_name = resolve_config(algo, env, preset, overrides)
    return run(algo, cfg, sources, preset_name)

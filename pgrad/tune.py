"""``pgrad tune``: hyperparameter search with Optuna, as RL Zoo's ``--optimize`` does it.

Each trial samples a config from the algorithm's search space (RL Zoo's ``hyperparams_opt.py``
distributions, pgrad's field names; deviations noted at each space), trains it with evaluations
every ``eval_every`` steps, and reports each evaluation's mean return to Optuna through a
:class:`~pgrad.callbacks.Callback`: the median pruner stops a trial whose evaluation falls below
the median of earlier trials' at the same step (Zoo: ``MedianPruner(n_startup_trials, n_warmup_steps
= a third of the evaluations)``), the TPE sampler proposes the next. The objective is the final
evaluation's mean return. A study in a storage (``sqlite:///study.db``) resumes where it stopped:
``--trials N`` is the study's total. With ``--workers K``, K Ray tasks run trials in parallel on
the shared storage. The best trial is written as a ``presets.toml`` table and as an RL Zoo YAML
entry (``pgrad train --zoo-file`` reads it back).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pgrad.callbacks import Callback
from pgrad.envspec import EnvSpec

NET_ARCH = {"tiny": (64,), "small": (64, 64), "medium": (256, 256), "big": (400, 300)}


# -- search spaces: trial -> {config field: value} ---------------------------------------------------


def capped(params: dict[str, Any], n_envs: int) -> dict[str, Any]:
    """A minibatch no larger than the rollout (n_steps × n_envs samples), as Zoo's samplers cap it."""
    if "batch_size" in params and "n_steps" in params:
        params["batch_size"] = min(params["batch_size"], params["n_steps"] * n_envs)
    return params


def _on_policy_common(trial, params: dict[str, Any], arch: tuple[str, ...]) -> None:
    net = trial.suggest_categorical("net_arch", list(arch))
    params["hidden_sizes"] = NET_ARCH[net]
    params["activation"] = trial.suggest_categorical("activation_fn", ["tanh", "relu"])


def sample_ppo(trial, n_envs: int) -> dict[str, Any]:
    """Zoo's PPO space; the minibatch is capped at the rollout's n_steps × n_envs samples."""
    p: dict[str, Any] = {}
    batch_size = trial.suggest_categorical("batch_size", [32, 64, 128, 256, 512])
    p["n_steps"] = trial.suggest_categorical("n_steps", [32, 64, 128, 256, 512, 1024, 2048])
    p["batch_size"] = batch_size
    p["gamma"] = 1 - trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True)
    p["gae_lambda"] = 1 - trial.suggest_float("one_minus_gae_lambda", 1e-4, 0.1, log=True)
    p["learning_rate"] = trial.suggest_float("learning_rate", 1e-5, 0.002, log=True)
    p["ent_coef"] = trial.suggest_float("ent_coef", 1e-8, 0.1, log=True)
    p["clip_range"] = trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3, 0.4])
    p["n_epochs"] = trial.suggest_categorical("n_epochs", [1, 5, 10, 20])
    p["max_grad_norm"] = trial.suggest_float("max_grad_norm", 0.3, 2)
    _on_policy_common(trial, p, ("tiny", "small", "medium"))
    return capped(p, n_envs)


def sample_a2c(trial, n_envs: int) -> dict[str, Any]:
    """Zoo's A2C space."""
    p: dict[str, Any] = {}
    p["n_steps"] = trial.suggest_categorical("n_steps", [32, 64, 128, 256, 512, 1024, 2048])
    p["gamma"] = 1 - trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True)
    p["gae_lambda"] = 1 - trial.suggest_float("one_minus_gae_lambda", 1e-4, 0.1, log=True)
    p["learning_rate"] = trial.suggest_float("learning_rate", 1e-5, 0.002, log=True)
    p["max_grad_norm"] = trial.suggest_float("max_grad_norm", 0.3, 2)
    p["ent_coef"] = trial.suggest_float("ent_coef", 1e-8, 0.1, log=True)
    _on_policy_common(trial, p, ("small", "medium"))
    return p


def sample_trpo(trial, n_envs: int) -> dict[str, Any]:
    """Zoo's TRPO space (NPG shares it, less target_kl's meaning: its step size)."""
    p: dict[str, Any] = {}
    batch_size = trial.suggest_categorical("batch_size", [8, 16, 32, 64, 128, 256, 512])
    p["n_steps"] = trial.suggest_categorical("n_steps", [8, 16, 32, 64, 128, 256, 512, 1024, 2048])
    p["batch_size"] = batch_size
    p["gamma"] = trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999])
    p["learning_rate"] = trial.suggest_float("learning_rate", 1e-5, 1, log=True)
    p["n_critic_updates"] = trial.suggest_categorical("n_critic_updates", [5, 10, 20, 25, 30])
    p["cg_max_steps"] = trial.suggest_categorical("cg_max_steps", [5, 10, 20, 25, 30])
    p["target_kl"] = trial.suggest_categorical("target_kl", [0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.001])
    p["gae_lambda"] = trial.suggest_categorical("gae_lambda", [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0])
    p["ortho_init"] = False
    _on_policy_common(trial, p, ("small", "medium"))
    return capped(p, n_envs)


def _off_policy_common(trial, p: dict[str, Any], batch_sizes: list[int]) -> None:
    p["gamma"] = trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999])
    p["learning_rate"] = trial.suggest_float("learning_rate", 1e-5, 1, log=True)
    p["batch_size"] = trial.suggest_categorical("batch_size", batch_sizes)
    p["buffer_size"] = trial.suggest_categorical("buffer_size", [10_000, 100_000, 1_000_000])
    p["tau"] = trial.suggest_categorical("tau", [0.001, 0.005, 0.01, 0.02, 0.05, 0.08])
    p["train_freq"] = trial.suggest_categorical("train_freq", [1, 4, 8, 16, 32, 64, 128, 256, 512])
    p["gradient_steps"] = p["train_freq"]
    p["hidden_sizes"] = NET_ARCH[trial.suggest_categorical("net_arch", ["small", "medium", "big"])]


def sample_sac(trial, n_envs: int) -> dict[str, Any]:
    """Zoo's SAC space, less its log_std_init (a gSDE parameter: pgrad's SAC has a state-dependent std)."""
    p: dict[str, Any] = {}
    _off_policy_common(trial, p, [16, 32, 64, 128, 256, 512, 1024, 2048])
    p["learning_starts"] = trial.suggest_categorical("learning_starts", [0, 1000, 10000, 20000])
    p["ent_coef"] = None  # learned ("auto")
    return p


def sample_deterministic(trial, n_envs: int) -> dict[str, Any]:
    """Zoo's TD3/DDPG space; its third noise choice, none, is left out (pgrad's DDPG/TD3 always explore
    with noise), and noise_std starts at 0.01 (pgrad's must be > 0)."""
    p: dict[str, Any] = {}
    _off_policy_common(trial, p, [16, 32, 64, 100, 128, 256, 512, 1024, 2048])
    noise = trial.suggest_categorical("noise_type", ["ornstein-uhlenbeck", "normal"])
    p["noise"] = "ou" if noise == "ornstein-uhlenbeck" else "normal"
    p["noise_std"] = trial.suggest_float("noise_std", 0.01, 1)
    return p


SPACES: dict[str, Callable[[Any, int], dict[str, Any]]] = {
    "ppo": sample_ppo,
    "a2c": sample_a2c,
    "trpo": sample_trpo,
    "npg": sample_trpo,
    "sac": sample_sac,
    "td3": sample_deterministic,
    "ddpg": sample_deterministic,
}


# -- the study ------------------------------------------------------------------------------------


class ReportToOptuna(Callback):
    """Each evaluation's mean to the trial; stops the run (pgrad's clean stop) when the pruner says so."""

    def __init__(self, trial):
        self.trial, self.pruned = trial, False

    def on_eval(self, step: int, result) -> bool:
        self.trial.report(result.mean, step)
        self.pruned = self.trial.should_prune()
        return not self.pruned


def objective(algo: str, env: Any, fixed: dict[str, Any], out: Path) -> Callable:
    """The Optuna objective: one pgrad run of the trial's sampled config; its final evaluation's mean."""

    def run(trial) -> float:
        import optuna

        import pgrad
        from pgrad.train import resolve_config

        spec = EnvSpec.from_user(env)
        base, _, _ = resolve_config(algo, spec.name, "auto", fixed, registered=spec.id is not None)
        params = SPACES[algo](trial, base.n_envs) | fixed  # a fixed field is never sampled
        if not hasattr(base, "buffer_size"):  # on-policy: n_steps is the rollout's length
            params = capped(params, base.n_envs)
        report = ReportToOptuna(trial)
        run_dir = out / f"trial-{trial.number:04d}"
        agent = pgrad.train(algo, env=env, run_dir=str(run_dir), callbacks=[report], overwrite=True,
                            save_final_checkpoint=False, **params)  # fmt: skip
        recorded = json.loads((run_dir / "config.json").read_text())
        trial.set_user_attr("config", {k: v for k, v in recorded["config"].items()  # preset + sampled + fixed
                                       if recorded["sources"].get(k) != "default" and k not in RUN_CONTROL | {"env"}})  # fmt: skip
        if report.pruned:
            raise optuna.TrialPruned()
        return agent.evaluation.mean

    return run


def make_study(storage: str | None, name: str, seed: int, n_evaluations: int):
    import optuna

    sampler = optuna.samplers.TPESampler(n_startup_trials=5, seed=seed, multivariate=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(n_evaluations // 3, 0))
    return optuna.create_study(study_name=name, storage=storage, direction="maximize", sampler=sampler,
                               pruner=pruner, load_if_exists=True)  # fmt: skip


def finished(study) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return sum(t.state in done for t in study.trials)


def _optimize(algo, env, fixed, out, storage, name, seed, n_evaluations, n_trials) -> None:
    """One process's share of the trials (a Ray task's, or this process's)."""
    import optuna

    from pgrad.algos.base import NonFiniteError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = make_study(storage, name, seed, n_evaluations)
    study.optimize(objective(algo, env, fixed, out), n_trials=n_trials, catch=(ValueError, NonFiniteError))


def tune(
    algo: str,
    env: Any,
    trials: int,
    fixed: dict[str, Any],
    out: Path,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    workers: int = 0,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Run the study to ``trials`` finished trials; write ``best.toml``, ``best.yml`` and
    ``trials.csv`` into ``out``; return the best trial's record."""
    try:
        import optuna
    except ImportError:
        raise ValueError("pgrad tune needs optuna: pip install 'pgrad[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if algo not in SPACES:
        raise ValueError(f"pgrad tune has no search space for {algo!r}: it tunes {', '.join(SPACES)}")
    if workers and storage is None:
        raise ValueError("--workers needs --storage (a database the workers share, e.g. sqlite:///study.db)")
    every, total = fixed.get("eval_every", 0), fixed.get("total_steps", 0)
    n_evaluations = total // every if every else 0
    env_name = EnvSpec.from_user(env).name
    name = study_name or f"{algo}-{env_name}"
    out.mkdir(parents=True, exist_ok=True)
    study = make_study(storage, name, seed, n_evaluations)
    remaining = max(trials - finished(study), 0)
    if workers and remaining:
        from pgrad.distributed import init_ray

        ray = init_ray(ray_address)
        task = ray.remote(num_cpus=1)(_optimize)
        shares = [remaining // workers + (i < remaining % workers) for i in range(workers)]
        ray.get([task.remote(algo, env, fixed, out, storage, name, seed + 1 + i, n_evaluations, n)
                 for i, n in enumerate(shares) if n])  # fmt: skip
    elif remaining:
        _optimize(algo, env, fixed, out, storage, name, seed, n_evaluations, remaining)
    study = make_study(storage, name, seed, n_evaluations) if storage else study
    return write_results(study, algo, env_name, fixed, out)


def write_results(study, algo: str, env: str, fixed: dict[str, Any], out: Path) -> dict[str, Any]:
    import optuna

    from pgrad.checkpoint import atomic_write

    rows = ["number,state,value," + ",".join(sorted({k for t in study.trials for k in t.params}))]
    names = rows[0].split(",")[3:]
    for t in study.trials:
        value = "" if t.value is None else repr(t.value)
        rows.append(",".join([str(t.number), t.state.name, value, *(str(t.params.get(k, "")) for k in names)]))
    atomic_write(out / "trials.csv", ("\n".join(rows) + "\n").encode())
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"no trial of study {study.study_name!r} completed (see {out / 'trials.csv'})")
    best = max(complete, key=lambda t: t.value)
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in best.user_attrs["config"].items()}
    atomic_write(out / "best.toml", presets_toml(algo, env, params, best).encode())
    atomic_write(out / "best.yml", zoo_yaml(env, params, best).encode())
    return {"number": best.number, "value": best.value, "params": params, "trials": len(study.trials)}


# how each trial was run, not what it found
RUN_CONTROL = {"run_dir", "overwrite", "progress_bar", "verbose", "seed", "eval_every", "eval_episodes", "tensorboard",
               "save_final_checkpoint", "track", "track_project", "tracking_uri"}  # fmt: skip


def presets_toml(algo: str, env: str, params: dict[str, Any], best) -> str:
    lines = [f"# pgrad tune: trial {best.number}, final evaluation {best.value:.2f} (paste into presets.toml)",
             f'[{algo}."{env}"]']  # fmt: skip
    for key, value in sorted(params.items()):
        # TOML has no null: a None (SAC's learned ent_coef) is the field's default, left out
        lines.append(f"{key} = {_toml(value)}" if value is not None else f"# {key}: None (its default)")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} has no TOML form here")
    return repr(value)


ZOO_NAMES = {"total_steps": "n_timesteps"}
ZOO_ACTIVATION = {"tanh": "nn.Tanh", "relu": "nn.ReLU", "elu": "nn.ELU", "silu": "nn.SiLU"}


def zoo_yaml(env: str, params: dict[str, Any], best) -> str:
    """An RL Zoo entry: SB3 names, network settings in policy_kwargs (``--zoo-file`` reads it back)."""
    import yaml

    entry: dict[str, Any] = {"policy": "MlpPolicy"}
    policy_kwargs = []
    for key, value in sorted(params.items()):
        if key == "hidden_sizes":
            policy_kwargs.append(f"net_arch={list(value)}")
        elif key == "activation":
            policy_kwargs.append(f"activation_fn={ZOO_ACTIVATION[value]}")
        elif key in ("ortho_init", "log_std_init"):
            policy_kwargs.append(f"{key}={value}")
        elif key == "noise":
            entry["noise_type"] = "ornstein-uhlenbeck" if value == "ou" else "normal"
        elif key == "ent_coef" and value is None:
            entry["ent_coef"] = "auto"
        else:
            entry[ZOO_NAMES.get(key, key)] = list(value) if isinstance(value, tuple) else value
    if policy_kwargs:
        entry["policy_kwargs"] = f"dict({', '.join(policy_kwargs)})"
    header = f"# pgrad tune: trial {best.number}, final evaluation {best.value:.2f}\n"
    return header + yaml.safe_dump({env: entry}, sort_keys=False)

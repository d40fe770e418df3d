"""``pgrad.train``: resolve a config (defaults ← preset ← user), run it, save and evaluate the agent."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import difflib
import json
import os
import random
import signal
import threading
import tomllib
from collections.abc import Callable, Iterator
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pgrad import checkpoint
from pgrad.agent import Agent, check_device
from pgrad.algos import get_algo
from pgrad.algos.base import EpisodeLoop, NonFiniteError, OffPolicyLoop, OnPolicyLoop, restart_episodes
from pgrad.callbacks import RunInfo, StopAtReturn, checked
from pgrad.checkpoint import CHECKPOINT_FILE
from pgrad.config import RunConfig, from_jsonable, plain, positive_int, to_jsonable
from pgrad.envs import check_spaces, make_vec_env
from pgrad.envspec import EnvSpec, EnvSpecError, check_env_id, check_user_env, is_atari
from pgrad.evaluation import EvalResult, evaluate
from pgrad.logging import RunLogger
from pgrad.rundir import RunDirLock, discard_run_dir, open_run_dir, remove_run_files
from pgrad.spaces import action_storage, describe, signature
from pgrad.state import capture, restore
from pgrad.tracking import Trackers, check_available
from pgrad.wrappers import preprocessed
from pgrad.zoo import ZooEntry, read_zoo


def load_presets() -> dict[str, dict[str, dict[str, Any]]]:
    """``{algo: {env_id: {field: value}}}`` from the package's ``presets.toml``."""
    text = resources.files("pgrad").joinpath("presets.toml").read_text()
    return tomllib.loads(text)


def resolve_config(
    algo: str,
    env: str,
    preset: str = "auto",
    overrides: dict[str, Any] | None = None,
    registered: bool = True,
    zoo: ZooEntry | None = None,
) -> tuple[RunConfig, dict[str, str], str | None]:
    """Build the config: plain defaults, then the (algo, env) preset unless ``preset="none"`` (or an
    RL-Zoo file's entry, ``zoo``, in its place), then ``overrides``. Returns ``(config, source of
    each field, preset name or None)``. ``env`` is an id (checked when ``registered``) or the name
    of a user's env spec."""
    entry = get_algo(algo)
    if registered:
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
    tables = load_presets().get(entry.name, {})
    preset_key = env if env in tables or not is_atari(env) else "atari"  # one table for every Atari game
    preset_values = tables.get(preset_key, {}) if preset == "auto" and zoo is None else {}
    values: dict[str, Any] = {"env": env}
    sources = {name: "default" for name in fields}
    sources["env"] = "user"
    base = ("zoo", zoo.fields) if zoo is not None else ("preset", preset_values)
    for source, layer in (base, ("user", overrides)):
        for key, value in layer.items():
            values[key] = tuple(value) if isinstance(value, list) else value
            sources[key] = source
    config = entry.config_class(**values)
    if zoo is not None:
        return config, sources, f"zoo:{zoo.name}"
    return config, sources, f"{entry.name}/{preset_key}" if preset_values else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """``auto``: cuda when torch sees one, else cpu; anything else checked by :func:`check_device`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(device)


def run_dir_for(algo: str, cfg: RunConfig) -> Path:
    """``cfg.run_dir``, or ``runs/<algo>-<env>-<seed>-<time>``."""
    if cfg.run_dir is not None:
        return Path(cfg.run_dir)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{algo}-{cfg.env}-{cfg.seed}-{stamp}"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_needed(cfg: RunConfig, obs_bytes: int, action_shape: tuple[int, ...]) -> dict[str, int]:
    """A lower estimate of the bytes a run allocates, by what allocates them: the networks (weights,
    gradients and Adam's two moments of every actor, critic and target copy) and the storage
    (observations in their stored form: ``obs_bytes`` each)."""
    obs_dim, action_dim = obs_bytes // 4, int(np.prod(action_shape))
    sizes = [obs_dim + action_dim, *getattr(cfg, "hidden_sizes", ()), 2 * action_dim + 1]
    one_net = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    copies = 4 * (6 if hasattr(cfg, "buffer_size") else 2)
    need = {"networks (hidden_sizes)": 4 * one_net * copies}
    if hasattr(cfg, "buffer_size"):
        stored = 1 if cfg.optimize_memory_usage else 2  # each observation once, or as s and as s'
        need["replay buffer (buffer_size)"] = cfg.buffer_size * (stored * obs_bytes + 4 * (action_dim + 2))
    if hasattr(cfg, "n_steps") and not hasattr(cfg, "buffer_size"):  # an on-policy rollout (not n-step targets)
        need["rollout (n_steps × n_envs)"] = cfg.n_steps * cfg.n_envs * (obs_bytes + 4 * (action_dim + 8))
    return need


def check_memory(cfg: RunConfig, obs_bytes: int, action_shape: tuple[int, ...]) -> None:
    """Refuse a run that cannot fit in this machine's available memory, naming what is too large."""
    need, available = memory_needed(cfg, obs_bytes, action_shape), available_memory()
    if available is None or sum(need.values()) <= available:
        return
    largest = max(need, key=need.get)
    raise ValueError(
        f"this run needs at least {sum(need.values()) / 2**30:,.1f} GiB ({largest}: {need[largest] / 2**30:,.1f} GiB) "
        f"and this machine has {available / 2**30:,.1f} GiB available: make {largest.split('(')[1].rstrip(')')} smaller"
    )


PYTHON_RANDOM = random.getstate.__self__  # the random module's own generator (a random.Random)


class Interrupted(Exception):
    """SIGINT/SIGTERM stopped the run after writing a checkpoint; the message says how to resume."""


class _StopRequested(Exception):
    """A callback asked to stop (``--stop-at-return`` among them): the run ends as a finished one."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


class Trainer:
    """One run: env, algorithm, loop, logger, and the counters of logging, evaluation, checkpoints.

    A checkpoint holds all of it that decides the future (``pgrad.state``), so a resumed run
    continues bitwise as the uninterrupted one would on the same machine.
    """

    def __init__(self, algo: str, cfg: RunConfig, run_dir: Path, spec: EnvSpec | None = None, callbacks: Any = None):
        self.entry, self.cfg, self.run_dir = get_algo(algo), cfg, run_dir
        check_available(cfg.track)  # before anything is built or written
        self.user_spec = spec or EnvSpec.from_user(cfg.env)
        self.callbacks = checked(callbacks)
        if cfg.stop_at_return is not None:
            self.callbacks.append(StopAtReturn(cfg.stop_at_return))
        self.spec = preprocessed(self.user_spec, cfg.preprocess, cfg.frame_stack)
        self.device = resolve_device(cfg.device)
        torch.set_num_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        action_mode = getattr(self.entry.algo_class, "action_mode", "clip")
        self.env = make_vec_env(
            self.spec,
            cfg.n_envs,
            cfg.seed,
            cfg.vectorization,
            normalize_obs=cfg.normalize_obs,
            normalize_reward=cfg.normalize_reward,
            gamma=getattr(cfg, "gamma", 0.99),
            action_mode=action_mode,
            images=cfg.images,
        )
        try:
            self.agent, self.loop = self._build(action_mode)
        except BaseException:
            self.env.close()  # async envs' subprocesses, when a check refuses the run
            raise
        self.counters = {"updates": 0, "next_eval": cfg.eval_every, "next_checkpoint": cfg.checkpoint_every}
        self.checkpoint_step: int | None = None
        self._stop_signal: int | None = None
        self._stop_requested = False
        self.begun = False  # config.json written: the directory is this run's

    def begin(self, sources: dict[str, str] | None, preset: str | None) -> None:
        """The run is sure to start: its directory's old files go, ``config.json`` is written."""
        remove_run_files(self.run_dir)  # an overwritten run keeps nothing of the old one
        config = {
            "algo": self.entry.name,
            "config": to_jsonable(self.cfg),
            "sources": sources or {},
            "preset": preset,
            "env_spec": self.user_spec.to_json(),
            "versions": {"torch": torch.__version__, "gymnasium": gym.__version__},
        }
        checkpoint.atomic_write(self.run_dir / "config.json", json.dumps(config, indent=2).encode())
        self.begun = True

    def _build(self, action_mode: str):
        """The algorithm, its agent and its loop, on the env built (memory checked first)."""
        cfg = self.cfg
        check_memory(cfg, self.env.layout.nbytes, action_storage(self.env.action_space)[0])
        try:
            algorithm = self.entry.algo_class(cfg, self.env.observation_space, self.env.action_space, self.device)
        except RuntimeError as e:  # an allocation the estimate did not foresee
            if "allocate" not in str(e):
                raise
            raise ValueError(f"this run does not fit in memory ({str(e).splitlines()[-1][:160]})") from None
        agent = Agent(
            self.entry.name,
            cfg.env,
            algorithm.policy,
            self.env.observation_space,
            self.env.action_space,
            self.env.normalizer,
            action_mode,
            to_jsonable(cfg),
        )
        agent.run_dir = self.run_dir
        agent.env_spec, agent.user_spec = self.spec, self.user_spec
        if self.entry.loop == "episodes" and cfg.workers:
            from pgrad.distributed import DistributedEpisodeLoop

            loop = DistributedEpisodeLoop(
                algorithm, self.env, cfg, self.device, self.entry.name, action_mode, self.spec
            )
        elif self.entry.loop == "episodes":
            loop = EpisodeLoop(algorithm, self.env, cfg.episodes_per_update, cfg.total_steps, self.device)
        elif self.entry.loop == "off_policy":
            loop = OffPolicyLoop(algorithm, self.env, cfg, self.device)
        elif self.entry.loop == "async":
            from pgrad.distributed import AsyncGradientLoop

            loop = AsyncGradientLoop(algorithm, self.env, cfg, self.device, action_mode, self.spec)
        elif getattr(cfg, "workers", 0):
            from pgrad.distributed import DistributedOnPolicyLoop

            loop = DistributedOnPolicyLoop(
                algorithm, self.env, cfg, self.device, self.entry.name, action_mode, self.spec
            )
        else:
            loop = OnPolicyLoop(algorithm, self.env, cfg.n_steps, cfg.total_steps, self.device)
        return agent, loop

    # -- checkpoints ------------------------------------------------------------------------------

    def save_checkpoint(self, global_step: int) -> None:
        """Write the agent and the full training state (atomically), after checking it is finite."""
        for name, p in self.agent.policy.named_parameters():
            if not torch.isfinite(p).all():
                raise NonFiniteError(f"non-finite parameter {name} at step {global_step}; checkpoint not written")
        tensors: dict[str, torch.Tensor] = {}
        meta: dict = {}
        capture({"loop": self.loop, "trainer": self.counters}, "run", tensors, meta)
        if self.env.exact_state:
            capture(self.env.sim_state(), "sim", tensors, meta)
        tensors["rng.torch"] = torch.get_rng_state()
        np_state = np.random.get_state()
        tensors["rng.numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
        meta["rng.numpy"] = [np_state[0], *map(float, np_state[2:])]
        capture(PYTHON_RANDOM, "rng.python", tensors, meta)
        meta["global_step"] = global_step
        self.agent.save(self.run_dir)
        checkpoint.save_checkpoint(self.run_dir, tensors, meta)
        self.checkpoint_step = global_step

    def load_checkpoint(self, recorded_total: int | None = None) -> int:
        """Restore the checkpoint's state; ``recorded_total``: the run's total_steps on record (a
        checkpoint at it is a finished run's, which a larger total extends)."""
        tensors, meta = checkpoint.load_checkpoint(self.run_dir)
        step, total = meta.get("global_step"), self.cfg.total_steps
        if type(step) is int and step >= total and recorded_total not in (None, total):
            raise ValueError(
                f"total_steps={total:,} is invalid: the run's checkpoint is at step {step:,} (extend it past that)"
            )
        if type(step) is int and step >= total and step == recorded_total:
            raise checkpoint.CheckpointError(
                f"{self.run_dir} finished at step {step:,}: extend it with --total-steps N (N > {step:,}), "
                "or pgrad.resume(run, total_steps=N)"
            )
        try:
            state = {"loop": self.loop, "trainer": self.counters}
            restore(state, "run", tensors, meta)
            if hasattr(self.loop, "pool"):
                Console(stderr=True).print(
                    "[yellow]Ray rollout workers start new episodes from a seeded reset on resume "
                    "(the learner's state is restored exactly)[/]"
                )
            elif self.env.exact_state:
                saved = {k[4:] for k in [*meta, *tensors] if k.startswith("sim.")}
                template, _ = self.env.fresh_sim_state()  # load_sim_state refuses keys the envs do not have
                self.env.load_sim_state(restore({k: template.get(k) for k in saved}, "sim", tensors, meta))
            elif hasattr(self.loop, "obs"):
                restart_episodes(self.loop)  # the simulator's state is not ours to restore: new episodes
                Console(stderr=True).print(
                    f"[yellow]{escape(self.cfg.env)} keeps state pgrad cannot copy (Box2D's world; an Atari emulator's last "
                    "action, which sticky actions repeat and ALE does not save): "
                    "resuming with new episodes (everything else is restored exactly)[/]"
                )
            torch.set_rng_state(tensors["rng.torch"])
            name, pos, has_gauss, cached = meta["rng.numpy"]
            np.random.set_state(
                (name, tensors["rng.numpy"].numpy().astype(np.uint32), int(pos), int(has_gauss), cached)
            )
            restore(PYTHON_RANDOM, "rng.python", tensors, meta)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise checkpoint.CheckpointError(
                f"{self.run_dir}: the checkpoint does not fit this config/pgrad ({type(e).__name__}: {e})"
            ) from None
        self.checkpoint_step = self._checked_step(meta.get("global_step"))
        return self.checkpoint_step

    def _checked_step(self, step: Any) -> int:
        """The restored counters are ones this run can have reached (a tampered ``update=10**6``
        would otherwise end the run at once, or never)."""
        total, loop, c = self.cfg.total_steps, self.loop, self.counters
        problems = []
        if not (type(step) is int and 0 <= step < total):
            problems.append(f"global_step={step!r} is not a step before total_steps={total}")
        elif getattr(loop, "global_step", step) != step:
            problems.append(f"the loop's global_step={loop.global_step!r} is not the checkpoint's {step}")
        if hasattr(loop, "n_updates") and not (type(loop.update) is int and 0 <= loop.update < loop.n_updates):
            problems.append(f"update={loop.update!r} is not in [0, {loop.n_updates})")
        for name, value in c.items():
            if not (type(value) is int and value >= 0):
                problems.append(f"counter {name}={value!r} is not an integer >= 0")
        if problems:
            raise checkpoint.CheckpointError(f"{self.run_dir / CHECKPOINT_FILE}: {problems[0]}; the file is corrupt")
        return step

    # -- the run ----------------------------------------------------------------------------------

    def on_update(self, logger: RunLogger, global_step: int, metrics: dict[str, float]) -> None:
        """Log the update's row, evaluate when due (eval.csv, stdout, the best model), then the callbacks."""
        cfg, c = self.cfg, self.counters
        c["updates"] += 1
        last = global_step >= cfg.total_steps
        if c["updates"] % cfg.log_interval == 0 or last:
            logger.log(global_step, metrics)
            if cfg.verbose >= 2:
                values = " · ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
                print(f"step {global_step:,} · {values}", flush=True)
        answers = [cb.on_update(global_step, dict(metrics)) for cb in self.callbacks]
        if cfg.eval_every and global_step >= c["next_eval"]:
            while c["next_eval"] <= global_step:
                c["next_eval"] += cfg.eval_every
            result = self.evaluate_now()
            best = logger.log_eval(global_step, result.returns)
            if best:
                self.agent.save(self.run_dir, best={"global_step": global_step, "mean_return": result.mean})
            self.plot_curve()
            if cfg.verbose >= 1:
                mark = " · new best, saved to best_model.safetensors" if best else ""
                print(f"eval at step {global_step:,}: {result.mean:.2f} ± {result.std:.2f} over "
                      f"{len(result.returns)} episodes{mark}", flush=True)  # fmt: skip
            answers += [cb.on_eval(global_step, EvalResult(list(result.returns), list(result.lengths)))
                        for cb in self.callbacks]  # fmt: skip
        if any(answer is not None and not answer for answer in answers):
            self._stop_requested = True

    def evaluate_now(self) -> EvalResult:
        """An evaluation during training, on a fresh env with the evaluation seeds: it draws on no
        generator of the run (a sampled action's randomness is forked off torch's), so training
        goes on exactly as without it."""
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            return evaluate(
                self.agent, self.cfg.eval_episodes or 10, self.cfg.seed, deterministic=self.cfg.eval_deterministic
            )

    def poll(self, global_step: int) -> None:
        """A checkpoint when one is due, the stop a callback asked for, and the stop a signal
        asked for (with a checkpoint)."""
        self.poll_due(global_step)
        if self._stop_signal is not None and global_step < self.cfg.total_steps:
            self.save_checkpoint(global_step)
            name = signal.Signals(self._stop_signal).name
            raise Interrupted(
                f"{name}: stopped at step {global_step:,} with a checkpoint; resume with: pgrad train --resume {self.run_dir}"
            )

    def poll_due(self, global_step: int) -> None:
        """A checkpoint when one is due; the stop a callback asked for."""
        cfg, c = self.cfg, self.counters
        last = global_step >= cfg.total_steps
        if cfg.checkpoint_every and global_step >= c["next_checkpoint"] and not last:
            while c["next_checkpoint"] <= global_step:
                c["next_checkpoint"] += cfg.checkpoint_every
            self.save_checkpoint(global_step)
            self.plot_curve()
        if self._stop_requested and not last:
            raise _StopRequested(global_step)

    def plot_curve(self) -> None:
        """``curve.png``: the training returns so far; redrawn at each checkpoint and evaluation, and at the end."""
        from pgrad.plotting import plot_runs

        cfg = self.cfg
        if (self.run_dir / "progress.csv").is_file():  # the run's logger made it (not a bare loop, as in tests)
            title = f"{self.entry.name} on {cfg.env} (seed {cfg.seed})"
            plot_runs([self.run_dir], self.run_dir / "curve.png", title=title)

    def _on_signal(self, signum: int, frame) -> None:
        if self._stop_signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum

    def run(self, resume_step: int | None = None) -> Agent:
        with stop_signals([self]), self.session(resume_step) as logger:
            steps = self.guarded(lambda: self.loop.run(partial(self.on_update, logger), self.poll))
            self.elapsed = logger.elapsed
            self.final_checkpoint(steps)
        return self.finish(steps)

    @contextlib.contextmanager
    def session(self, resume_step: int | None = None) -> Iterator[RunLogger]:
        """Around the loop: the callbacks' start, the trackers, the logger (yielded); a failure
        marks the trackers failed, and the envs are closed whatever happens."""
        info = RunInfo(self.entry.name, self.cfg, self.run_dir, resume_step or 0, self.agent)
        for cb in self.callbacks:
            cb.on_training_start(info)
        self.trackers = Trackers(self.cfg, self.run_dir, self.entry.name, to_jsonable(self.cfg))
        self.trackers.start()
        try:
            cfg, tracked = self.cfg, self.trackers if self.trackers.items else None
            with RunLogger(
                self.run_dir, cfg.total_steps, cfg.tensorboard, cfg.progress_bar, resume_step, tracked
            ) as logger:
                yield logger
        except BaseException:
            self.trackers.finish(failed=True)
            raise
        finally:
            self.env.close()

    def guarded(self, train: Callable[[], int]) -> int:
        """``train()``'s steps; a callback's stop ends the run there, a NaN names the last checkpoint."""
        try:
            return train()
        except _StopRequested as stop:
            return stop.step
        except NonFiniteError as e:
            where = (
                f"the last good checkpoint (step {self.checkpoint_step:,}) is in {self.run_dir}"
                if self.checkpoint_step is not None
                else "no checkpoint was written before it"
            )
            raise NonFiniteError(f"{e}; {where}") from None

    def final_checkpoint(self, steps: int) -> None:
        if self.cfg.save_final_checkpoint or self.cfg.checkpoint_every:
            self.save_checkpoint(steps)  # `--resume RUN --total-steps N` extends the run from here

    def finish(self, steps: int) -> Agent:
        """The finished run's files and summary (``_finish``), then the trackers' and callbacks' end."""
        try:
            self._finish(steps, self.elapsed, self.trackers)
        except BaseException:
            self.trackers.finish(failed=True)
            raise
        self.trackers.finish()
        for cb in self.callbacks:
            cb.on_training_end(self.agent, steps)
        return self.agent

    def _finish(self, steps: int, elapsed: float, trackers: Trackers) -> None:
        """The finished run's files: the agent, the final evaluation, the curve; the summary."""
        cfg, run_dir = self.cfg, self.run_dir
        self.agent.save(run_dir)
        if not (cfg.save_final_checkpoint or cfg.checkpoint_every):
            (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # finished: the agent is the result

        self.agent.evaluation = None
        if cfg.eval_episodes > 0:
            self.agent.evaluation = evaluate(
                self.agent, cfg.eval_episodes, cfg.seed, deterministic=cfg.eval_deterministic
            )
            checkpoint.atomic_write(
                run_dir / "eval.json", json.dumps(self.agent.evaluation.to_json(), indent=2).encode()
            )
            result = self.agent.evaluation
            trackers.log(steps, {"eval/final_mean_return": result.mean, "eval/final_std_return": result.std})
        self.plot_curve()
        if cfg.verbose >= 1:
            stopped = steps < cfg.total_steps
            print_summary(Console(), self.entry.name, cfg, steps, elapsed, self.agent.evaluation, run_dir, stopped)


@contextlib.contextmanager
def stop_signals(trainers: list[Trainer]) -> Iterator[None]:
    """SIGINT/SIGTERM ask ``trainers`` to stop at their next poll, with a checkpoint (a second
    signal stops at once); from the main thread only, where Python delivers signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame) -> None:
        for trainer in trainers:
            trainer._on_signal(signum, frame)

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def run(
    algo: str,
    cfg: RunConfig,
    sources: dict[str, str] | None = None,
    preset: str | None = None,
    spec: EnvSpec | None = None,
    check_env: bool = True,
    callbacks: Any = None,
) -> Agent:
    """Train ``algo`` with a resolved config on ``spec`` (default: the id ``cfg.env``); writes the
    run directory and returns the agent. ``callbacks``: :class:`pgrad.Callback` instances.

    The directory is locked for the whole run. Everything that can refuse the config (the env,
    gymnasium's env checker on a user's env, its spaces, memory) is checked before the first
    write; a start that fails leaves no debris, and ``overwrite`` removes the old run's files only
    once the new run is sure to start."""
    entry = get_algo(algo)
    spec = spec or EnvSpec.from_user(cfg.env)
    if check_env and not spec.builtin:
        check_user_env(spec, check_spaces)
    with prepared(entry.name, cfg, spec, callbacks) as trainer:
        trainer.begin(sources, preset)
        return trainer.run()


@contextlib.contextmanager
def prepared(algo: str, cfg: RunConfig, spec: EnvSpec, callbacks: Any = None) -> Iterator[Trainer]:
    """The run directory created and locked, the trainer built on it (and ``init_from`` loaded),
    the lock held until the block ends. A failure before :meth:`Trainer.begin` writes anything
    (the trainer's own checks, or another seed's) closes its envs and leaves no debris."""
    run_dir = run_dir_for(algo, cfg)
    lock, created = open_run_dir(run_dir, cfg.overwrite)
    trainer = None
    try:
        trainer = Trainer(algo, cfg, run_dir, spec, callbacks)
        if cfg.init_from is not None:
            init_from(trainer, cfg.init_from)
        yield trainer
    except BaseException:
        if trainer is None or not trainer.begun:
            if trainer is not None:
                trainer.env.close()  # async envs' subprocesses
            lock.release()
            discard_run_dir(run_dir, created)
        raise
    finally:
        lock.release()


def init_from(trainer: Trainer, path: str) -> None:
    """Start a new run from a saved agent's policy weights and observation statistics (fine-tuning,
    ``--init-from RUN``): same observation and action spaces, same policy architecture, same
    ``normalize_obs``. Everything else (critics of off-policy algorithms, optimiser state, counters)
    starts fresh; a target actor (DDPG, TD3) starts as the loaded actor."""
    from pgrad.agent import load

    try:
        saved = load(path)
    except checkpoint.CheckpointError as e:
        raise ValueError(f"init_from: {e}") from None
    agent, env = trainer.agent, trainer.env
    if (signature(saved.observation_space), signature(saved.action_space)) != (
        signature(env.observation_space),
        signature(env.action_space),
    ):
        raise ValueError(
            f"init_from={path!r}: its agent observes {describe(saved.observation_space)} and gives "
            f"{describe(saved.action_space)}; this run's env observes {describe(env.observation_space)} and takes "
            f"{describe(env.action_space)} (fine-tuning needs the same spaces)"
        )
    mine, theirs = agent.policy.state_dict(), saved.policy.state_dict()
    shapes = {k: tuple(v.shape) for k, v in mine.items()}
    if type(saved.policy) is not type(agent.policy) or shapes != {k: tuple(v.shape) for k, v in theirs.items()}:
        raise ValueError(
            f"init_from={path!r}: its policy ({saved.algo}'s {type(saved.policy).__name__}, hidden sizes "
            f"{saved.config.get('hidden_sizes')}) does not fit this run's ({trainer.entry.name}'s "
            f"{type(agent.policy).__name__}, hidden sizes {list(getattr(trainer.cfg, 'hidden_sizes', []))})"
        )
    if saved.normalizer.normalize_obs != env.normalizer.normalize_obs:
        raise ValueError(
            f"init_from={path!r}: its agent was trained with normalize_obs={saved.normalizer.normalize_obs} and "
            f"this run has normalize_obs={env.normalizer.normalize_obs}: set it to match (its weights expect "
            "observations as it saw them)"
        )
    with torch.no_grad():
        agent.policy.load_state_dict(theirs)
        target = getattr(trainer.loop.algo, "actor_target", None)  # DDPG, TD3: μ' starts as μ
        if target is not None:
            target.load_state_dict(theirs)
    stats = saved.normalizer.state_dict()
    if not env.normalizer.normalize_reward:  # keep this run's own (unused) return statistics
        stats = {k: v for k, v in stats.items() if k.startswith("obs_rms.")}
    env.normalizer.load_state_dict(env.normalizer.state_dict() | stats)


def resume(run_dir: str | Path, env: Any = None, total_steps: int | None = None, callbacks: Any = None) -> Agent:
    """Continue the run in ``run_dir`` from its last checkpoint, in the same directory. ``env``:
    the run's env again, for a run whose env has no import path (a lambda, a local class).
    ``total_steps``: extend the run to this many steps (a finished run with its final checkpoint:
    ``save_final_checkpoint`` or ``checkpoint_every``); a linear learning-rate schedule then spans
    the new total, as SB3's ``learn(reset_num_timesteps=False)``."""
    with resumed(run_dir, env, total_steps, callbacks) as (trainer, step):
        return trainer.run(resume_step=step)


@contextlib.contextmanager
def resumed(
    run_dir: str | Path, env: Any = None, total_steps: int | None = None, callbacks: Any = None
) -> Iterator[tuple[Trainer, int]]:
    """The run in ``run_dir`` locked, its trainer built and restored from its checkpoint:
    ``(trainer, step)`` for the block, which runs it (:func:`resume`)."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise checkpoint.CheckpointError(f"{str(run_dir)!r} is not a pgrad run directory (no config.json)")
    lock = RunDirLock(run_dir).acquire()
    try:
        remove_run_files(run_dir, everything=False)  # temp files of writes a kill interrupted
        try:
            data = json.loads(path.read_text())
            entry = get_algo(data["algo"])
            cfg = from_jsonable(entry.config_class, data["config"])
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise checkpoint.CheckpointError(f"{path} is unreadable ({type(e).__name__}: {e})") from None
        except ValueError as e:
            raise checkpoint.CheckpointError(f"{path}: {e}") from None
        finished_at = cfg.total_steps
        if total_steps is not None:
            positive_int("total_steps", plain(total_steps))
            cfg = cfg.replace(total_steps=plain(total_steps))
        record = data.get("env_spec") or {"id": cfg.env}
        try:
            spec = EnvSpec.from_user(env) if env is not None else EnvSpec.from_json(record)
        except EnvSpecError as e:
            raise checkpoint.CheckpointError(
                f"{run_dir}: {e}; resume it in Python: pgrad.resume(run_dir, env=...)"
            ) from None
        trainer = Trainer(entry.name, cfg, run_dir, spec, callbacks)
        try:
            step = trainer.load_checkpoint(finished_at)
            if cfg.total_steps != finished_at:  # the record says what the run now trains to
                data["config"]["total_steps"] = cfg.total_steps
                data.setdefault("sources", {})["total_steps"] = "user"
                checkpoint.atomic_write(path, json.dumps(data, indent=2).encode())
            yield trainer, step
        except BaseException:
            trainer.env.close()  # closing twice (after the run's own close) is harmless
            raise
    finally:
        lock.release()


def print_summary(
    console: Console,
    algo: str,
    cfg: RunConfig,
    steps: int,
    elapsed: float,
    result: EvalResult | None,
    run_dir: Path,
    stopped: bool = False,
) -> None:
    table = Table(title=escape(f"pgrad {algo} on {cfg.env}"), show_header=False)
    table.add_row("steps", f"{steps:,}" + (f" (stopped early, of {cfg.total_steps:,})" if stopped else ""))
    table.add_row("wall time", f"{elapsed:.1f} s ({steps / elapsed:,.0f} steps/s)")
    if result is not None:
        table.add_row(f"eval ({len(result.returns)} episodes, deterministic)", f"{result.mean:.1f} ± {result.std:.1f}")
    table.add_row("run directory", escape(str(run_dir)))  # a path is text, not rich markup
    console.print(table)


def train(
    algo: str,
    env: Any = "CartPole-v1",
    total_steps: int | None = None,
    seed: int | None = None,
    preset: str = "auto",
    env_kwargs: dict[str, Any] | None = None,
    wrappers: list[Any] | None = None,
    check_env: bool = True,
    callbacks: Any = None,
    zoo_file: str | os.PathLike | None = None,
    seeds: Any = None,
    **fields: Any,
) -> Any:
    """Train and return an :class:`Agent`; ``fields`` are config fields of ``algo`` (SB3 names).

    ``env``: a registered id (``env_kwargs`` go to ``gym.make``), ``"module:EnvId"`` or
    ``"module:Factory"``, a factory returning a ``gymnasium.Env`` (a class, function, partial or
    lambda, called with ``env_kwargs``), or an env instance (``n_envs=1``). ``wrappers`` are
    applied to each sub-env in order: wrapper classes or callables ``env -> env``, ``(callable,
    kwargs)`` pairs or ``"module:Name:k=v"`` strings. A user's env is checked with gymnasium's env
    checker first (``check_env=False`` skips it). The (algo, env) preset applies unless
    ``preset="none"``; explicit arguments override it. ``agent.run_dir`` is the run directory,
    ``agent.evaluation`` the final evaluation. ``callbacks``: :class:`pgrad.Callback` instances.

    Unlike the CLI, it prints nothing unless asked (``verbose=1``: evaluation lines and the summary;
    ``progress_bar=True``) and keeps the final checkpoint (``save_final_checkpoint=True``), so
    ``agent.learn(steps)`` can continue the run.

    ``seeds`` (in place of ``seed``: a range or list of two or more): train every seed in this one
    process, their networks stacked (``pgrad.seeds``: PPO, A2C, actor_critic, SAC, TD3, DDPG), each seed an ordinary run in
    ``run_dir/seed-S``; returns the seeds' agents in order.
    """
    zoo = None
    if zoo_file is not None:
        zoo = read_zoo(zoo_file, get_algo(algo).name, EnvSpec.from_user(env).name, get_algo(algo).config_class)
        env_kwargs, wrappers = zoo.env_kwargs | (env_kwargs or {}), [*zoo.wrappers, *(wrappers or [])]
    spec = EnvSpec.from_user(env, env_kwargs, wrappers)
    overrides = dict(fields)
    if total_steps is not None:
        overrides["total_steps"] = total_steps
    if seed is not None:
        overrides["seed"] = seed
    overrides.setdefault("progress_bar", False)
    overrides.setdefault("verbose", 0)
    overrides.setdefault("save_final_checkpoint", True)
    if not isinstance(check_env, bool):
        raise ValueError(f"check_env={check_env!r} is invalid: must be True or False")
    if seeds is not None:
        from pgrad.seeds import check_stackable, parse_seeds, run_seeds

        if seed is not None:
            raise ValueError("seeds replaces seed: give one of them")
        listed = list(seeds) if isinstance(seeds, (range, list, tuple)) else None
        if listed is None or not all(type(s) is int for s in listed):
            raise ValueError(f"seeds={seeds!r} is invalid: a range or list of integers (range(16), [0, 1, 2])")
        seeds = parse_seeds(",".join(map(str, listed)))
    cfg, sources, preset_name = resolve_config(algo, spec.name, preset, overrides, spec.id is not None, zoo)
    if seeds is not None:
        check_stackable(get_algo(algo).name, cfg)
        return run_seeds(algo, cfg, seeds, sources, preset_name, spec, check_env, checked(callbacks))
    return run(algo, cfg, sources, preset_name, spec, check_env, checked(callbacks))

"""Sampling on Ray: rollout workers as actors, the learner in this process.

``--workers N`` splits the ``n_envs`` environments of an on-policy run into N contiguous slices,
one per Ray actor. Each :class:`RolloutWorker` owns a vector env of its slice (sub-env ``i`` seeded
``seed + i`` as in a single process) and runs the algorithm's own loop on it; per update the learner
puts the weights in the object store once, every worker collects and returns its part, and the
learner puts the slices side by side in the usual buffer and runs the algorithm's unchanged
``update``. The loops act through :class:`pgrad.algos.base.EnvSlice` (one action stream per env,
the network always on full-shape batches), so the split changes nothing: a run with N workers
equals the single-process run with the same seed and ``n_envs`` bit for bit (tested).
REINFORCE's whole-episode batches work the same way (:class:`DistributedEpisodeLoop`).

Also here: A3C's asynchronous learner (:class:`AsyncGradientLoop`, workers return gradients) and
``pgrad sweep`` (:func:`run_sweep`, one Ray task per trial).

A worker that dies (its process killed, its node lost) is replaced by a new actor that is given the
state the dead one had at the start of the update (observations, simulator state, action streams),
replays the update's earlier calls, and the failed one is collected again: nothing is dropped, and for simulators whose state pgrad can copy
(classic control, toy text) the result is the same as if nothing had happened.

Ray is an optional dependency (``pip install 'pgrad[distributed]'``); ``ray_address`` joins an
existing cluster, otherwise a local runtime starts with this machine's cores.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgrad.algos.base import (
    EnvSlice,
    Episode,
    EpisodeLoop,
    EpisodeStats,
    OnPolicyLoop,
    check_finite,
    no_poll,
    restart_episodes,
)
from pgrad.config import schedule
from pgrad.envs import make_vec_env
from pgrad.envspec import EnvSpec


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("distributed runs need Ray: pip install 'pgrad[distributed]' (or pip install ray)") from None
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None):
    """Connect to the cluster at ``address``, or start a local runtime with this machine's cores."""
    import logging

    ray = import_ray()
    if not ray.is_initialized():  # (an already running runtime is used as it is)
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}  # pgrad prints its own progress
        if address:
            check_ray_address(address)
            try:
                ray.init(address=address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ValueError(f"ray_address={address!r}: Ray could not join that cluster ({e})") from None
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **quiet)
    return ray


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """``'auto'``, ``HOST:PORT`` or ``ray://HOST:PORT`` of a port that answers within ``timeout``
    seconds; otherwise one ``ValueError`` (ray.init itself retries for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ray_address={address!r} is invalid: 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        reason = "no answer" if isinstance(e, TimeoutError) else e.strerror or str(e)
        raise ValueError(
            f"ray_address={address!r}: no Ray cluster answers there ({reason} within {timeout:g} s)"
        ) from None


def env_slices(n_envs: int, workers: int) -> list[range]:
    """Contiguous, equal slices of the env indices, one per worker."""
    if workers < 1 or n_envs % workers:
        raise ValueError(f"workers={workers} is invalid: must be >= 1 and divide n_envs={n_envs}")
    size = n_envs // workers
    return [range(k * size, (k + 1) * size) for k in range(workers)]


class RolloutWorker:
    """One slice of a run's environments with the algorithm's own loop, as a Ray actor.

    It builds the algorithm from the run's config (for its policy and, for A3C, its loss) and the
    loop the algorithm uses in a single process, restricted to its envs by an
    :class:`~pgrad.algos.base.EnvSlice`, so it collects exactly what that loop would for them.
    ``n_total`` is the run's env count (``None``: the slice acts on its own batch, as A3C does).
    """

    def __init__(self, cfg, algo: str, env_ids: list[int], action_mode: str = "clip", n_total: int | None = None,
                 spec: EnvSpec | None = None):  # fmt: skip
        from pgrad.algos import get_algo

        torch.set_num_threads(1)
        cpu = torch.device("cpu")
        env = make_vec_env(
            spec or cfg.env,
            len(env_ids),
            cfg.seed + env_ids[0],
            cfg.vectorization,
            gamma=cfg.gamma,
            action_mode=action_mode,
            images=cfg.images,
        )  # fmt: skip  (sub-env i of the run is seeded seed + i; the spec travels pickled by Ray)
        entry = get_algo(algo)
        self.algo = entry.algo_class(cfg, env.observation_space, env.action_space, cpu)
        env_slice = EnvSlice(cfg.seed, env_ids, n_total or len(env_ids), cpu)
        if entry.loop == "episodes":
            quota = math.ceil(cfg.episodes_per_update / cfg.n_envs)
            self.loop = EpisodeLoop(self.algo, env, cfg.episodes_per_update, cfg.total_steps, cpu, env_slice, quota)
        else:
            self.loop = OnPolicyLoop(self.algo, env, cfg.n_steps, cfg.total_steps, cpu, env_slice)

    def pid(self) -> int:
        return os.getpid()

    def get_state(self) -> dict[str, Any]:
        """What decides this worker's next call (pickled by Ray between processes)."""
        loop, env = self.loop, self.loop.env
        return {
            "loop": {k: getattr(loop, k) for k in ("obs", "started", "memory", "episode_start") if hasattr(loop, k)},
            "streams": loop.env_slice.streams.checkpoint_state(),
            "sim": env.sim_state() if env.exact_state else None,
            "episode": (env._ep_return.copy(), env._ep_length.copy()),
        }

    def set_state(self, state: dict[str, Any] | None) -> None:
        if state is None:  # a fresh worker: its seeded start is the one the dead one had
            return
        loop, env = self.loop, self.loop.env
        for k, v in state["loop"].items():
            setattr(loop, k, v)
        loop.env_slice.streams.load_checkpoint_state(state["streams"])
        if state["sim"] is not None:
            env.load_sim_state(state["sim"])
        elif getattr(loop, "obs", None) is not None:
            restart_episodes(loop)  # cannot copy this simulator: new episodes
        env._ep_return[:], env._ep_length[:] = state["episode"]

    def rollout(self, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
        """One rollout of the slice (:meth:`OnPolicyLoop.collect`), bootstrap values included."""
        self.algo.policy.load_state_dict(weights)
        episodes = self.loop.collect()
        buf = self.loop.buf
        fields = ROLLOUT_FIELDS + (RECURRENT_FIELDS if buf.recurrent else ())
        return {"data": {k: getattr(buf, k) for k in fields}, "episodes": episodes, "state": self.get_state()}

    def episodes(self, weights: dict[str, torch.Tensor]) -> int:
        """REINFORCE's first phase: every env of the slice runs its quota of whole episodes;
        returns the number of steps that took."""
        self.algo.policy.load_state_dict(weights)
        self.loop.begin()
        while not self.loop.quota_met:
            self.loop.step()
        return self.loop.batch.length

    def pad_to(self, length: int) -> dict[str, Any]:
        """Second phase: step on (stored as invalid) to the batch ``length`` the slowest slice needed,
        as one process does while its last env finishes."""
        batch = self.loop.batch
        while batch.length < length:
            self.loop.step()
        data = {k: getattr(batch, k).clone() for k in EPISODE_FIELDS}  # not the buffer's spare capacity
        return {"data": data, "episodes": self.loop.end(), "state": self.get_state()}

    def gradient(self, weights: dict[str, torch.Tensor], version: int) -> dict[str, Any]:
        """A3C: the gradient of the algorithm's loss on one rollout of the slice."""
        policy = self.algo.policy
        policy.load_state_dict(weights)
        episodes = self.loop.collect()
        loss, metrics = self.algo.loss(self.loop.buf)
        grads = torch.autograd.grad(loss, list(policy.parameters()))
        steps = self.loop.n_steps * self.loop.env.n_envs
        return {"grads": grads, "version": version, "steps": steps, "episodes": episodes, "metrics": metrics}


ROLLOUT_FIELDS = ("obs", "actions", "log_probs", "values", "rewards", "next_values", "terminated", "truncated")
RECURRENT_FIELDS = ("states", "episode_starts")  # a recurrent policy's, entering each step
EPISODE_FIELDS = ("obs", "actions", "rewards", "dones", "valid")


class WorkerPool:
    """The rollout workers of one run, and what it takes to replace one that dies.

    ``worker_states[k]`` is worker k's state at the start of the current update (returned by its
    last call of the previous one). Every call of the update is logged, so a replacement is given
    that state and replays the calls before the failed one: the update's data come out the same.
    """

    def __init__(self, cfg, algo: str, action_mode: str, spec: EnvSpec | None = None):
        if cfg.normalize_obs or cfg.normalize_reward:
            raise ValueError(
                f"workers={cfg.workers} with normalize_obs/normalize_reward is not supported: the running "
                "statistics would differ per worker; train with workers=0 or without normalisation"
            )
        self.ray = ray = init_ray(cfg.ray_address)
        self.slices = env_slices(cfg.n_envs, cfg.workers)
        remote = ray.remote(num_cpus=1)(RolloutWorker)
        self.make_worker = lambda k: remote.remote(cfg, algo, list(self.slices[k]), action_mode, cfg.n_envs, spec)
        self.workers = [self.make_worker(k) for k in range(cfg.workers)]
        self.worker_states: list[dict | None] = [None] * cfg.workers
        self.calls: list[list[tuple[str, tuple]]] = [[] for _ in self.workers]
        self.restarts = 0

    def begin_update(self) -> None:
        self.calls = [[] for _ in self.workers]

    def _replace(self, k: int) -> None:
        ray = self.ray
        self.restarts += 1
        self.workers[k] = self.make_worker(k)
        ray.get(self.workers[k].set_state.remote(self.worker_states[k]))
        for method, args in self.calls[k][:-1]:  # this update's earlier calls, replayed
            ray.get(getattr(self.workers[k], method).remote(*args))

    def gather(self, method: str, *args) -> list[Any]:
        """``worker.method(*args)`` on every worker in parallel; results in worker order."""
        ray = self.ray
        refs = []
        for k, w in enumerate(self.workers):
            self.calls[k].append((method, args))
            refs.append(getattr(w, method).remote(*args))
        results: list[Any] = []
        for k, ref in enumerate(refs):
            for attempt in range(3):
                try:
                    results.append(ray.get(ref))
                    break
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                    if attempt == 2:
                        raise RuntimeError(f"rollout worker {k} died three times in a row; giving up") from None
                    self._replace(k)
                    ref = getattr(self.workers[k], method).remote(*args)
        return results

    def end_update(self, results: list[dict]) -> None:
        self.worker_states = [res["state"] for res in results]

    def put_weights(self, policy: torch.nn.Module):
        return self.ray.put({k: v.detach().cpu() for k, v in policy.state_dict().items()})

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)


def _merged(results: list[dict]) -> list[Episode]:
    """The workers' finished episodes in the order one process sees them: by step, then env."""
    return sorted(e for res in results for e in res["episodes"])


class _OnWorkers:
    """Runs the loop it is mixed into, then lets its workers go."""

    pool: WorkerPool

    def run(self, on_update, poll=no_poll) -> int:
        try:
            return super().run(on_update, poll)
        finally:
            self.pool.close()


class DistributedOnPolicyLoop(_OnWorkers, OnPolicyLoop):
    """:class:`OnPolicyLoop` whose ``collect`` gathers the rollout from Ray workers."""

    not_state = (*OnPolicyLoop.not_state, "pool")

    def __init__(self, algo, env, cfg, device: torch.device, algo_name: str, action_mode: str = "clip", spec=None):
        super().__init__(algo, env, cfg.n_steps, cfg.total_steps, device)
        self.pool = WorkerPool(cfg, algo_name, action_mode, spec)

    def collect(self) -> list[Episode]:
        pool, buf = self.pool, self.buf
        pool.begin_update()
        results = pool.gather("rollout", pool.put_weights(self.algo.policy))
        pool.end_update(results)
        fields = ROLLOUT_FIELDS + (RECURRENT_FIELDS if buf.recurrent else ())
        for res, envs in zip(results, pool.slices, strict=True):
            for name in fields:
                getattr(buf, name)[:, envs.start : envs.stop] = res["data"][name].to(self.device)
        return _merged(results)


class DistributedEpisodeLoop(_OnWorkers, EpisodeLoop):
    """REINFORCE's :class:`EpisodeLoop` on Ray workers, in two phases per update.

    Each worker runs its envs to their quota of whole episodes (``L_k`` steps). One process steps
    every env until the *last* one is done (``L = max_k L_k``), so every worker then steps on to
    ``L`` (those steps stored as invalid, the envs and action streams advancing as in one process).
    The workers' batches side by side are then the single-process batch.
    """

    not_state = (*EpisodeLoop.not_state, "pool")

    def __init__(self, algo, env, cfg, device: torch.device, algo_name: str, action_mode: str = "clip", spec=None):
        super().__init__(algo, env, cfg.episodes_per_update, cfg.total_steps, device)
        self.pool = WorkerPool(cfg, algo_name, action_mode, spec)

    def collect(self) -> list[Episode]:
        pool, batch = self.pool, self.batch
        pool.begin_update()
        lengths = pool.gather("episodes", pool.put_weights(self.algo.policy))
        results = pool.gather("pad_to", max(lengths))
        pool.end_update(results)
        data = {k: torch.cat([res["data"][k] for res in results], dim=1).to(self.device) for k in EPISODE_FIELDS}
        batch.clear()
        for t in range(max(lengths)):
            batch.store(*(data[k][t] for k in EPISODE_FIELDS))
        return _merged(results)


class AsyncGradientLoop:
    """A3C's learner: apply each worker's gradient to the shared parameters as it arrives.

    Worker k computes its gradient on the weights of version v (the number of updates applied when
    it was sent); by the time it arrives the learner may be at v + s. ``charts/staleness`` logs s.
    The learner then sends that worker the newest weights for its next rollout.
    """

    not_state = ("workers", "ray", "make_worker", "pending")

    def __init__(self, algo, env, cfg, device: torch.device, action_mode: str = "clip", spec=None):
        if cfg.normalize_obs or cfg.normalize_reward:
            raise ValueError("a3c with normalize_obs/normalize_reward is not supported: each worker would "
                             "keep its own statistics")  # fmt: skip
        self.algo, self.cfg, self.device = algo, cfg, device
        self.ray = ray = init_ray(cfg.ray_address)
        slices = env_slices(cfg.n_envs, cfg.workers)
        remote = ray.remote(num_cpus=1)(RolloutWorker)
        self.make_worker = lambda k: remote.remote(cfg, "a3c", list(slices[k]), action_mode, None, spec)
        self.workers = [self.make_worker(k) for k in range(cfg.workers)]
        self.stats = EpisodeStats()
        self.global_step = self.version = 0
        self.restarts = 0

    def _weights(self):
        return self.ray.put({k: v.detach().cpu() for k, v in self.algo.policy.state_dict().items()})

    def run(self, on_update, poll=no_poll) -> int:
        ray, algo, cfg = self.ray, self.algo, self.cfg
        weights = self._weights()
        pending = {w.gradient.remote(weights, self.version): k for k, w in enumerate(self.workers)}
        try:
            while self.global_step < cfg.total_steps:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                k = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                    # A dead worker: a new one recomputes that gradient on the current weights.
                    self.restarts += 1
                    self.workers[k] = self.make_worker(k)
                    pending[self.workers[k].gradient.remote(self._weights(), self.version)] = k
                    continue
                staleness = self.version - res["version"]
                progress_remaining = max(0.0, 1.0 - self.global_step / cfg.total_steps)
                learning_rate = schedule(cfg.learning_rate, cfg.lr_schedule, progress_remaining)
                for p, g in zip(algo.policy.parameters(), res["grads"], strict=True):
                    p.grad = g.to(p.device)
                algo.step(learning_rate)  # θ ← θ − lr · clip(∇L(θ_{v−s}))
                self.version += 1
                self.global_step += res["steps"]
                if self.global_step < cfg.total_steps:
                    pending[self.workers[k].gradient.remote(self._weights(), self.version)] = k
                metrics = res["metrics"] | {
                    "charts/staleness": float(staleness),
                    "charts/learning_rate": learning_rate,
                    "charts/worker_restarts": float(self.restarts),
                }
                check_finite(metrics, self.global_step, list(algo.policy.named_parameters()))
                on_update(self.global_step, self.stats.add_episodes(res["episodes"]) | metrics)
                poll(self.global_step)
        finally:
            for w in self.workers:
                ray.kill(w)
        return self.global_step


# -- sweeps -------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A command-line value: int, float, true/false, or the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def _trial(algo: str, env: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """One trial in a Ray task: train, evaluate, report (an exception is reported, not raised)."""
    import traceback

    import pgrad

    start = time.perf_counter()
    try:
        agent = pgrad.train(algo, env=env, **overrides)
    except Exception as e:  # a failed trial is recorded in the summary; the sweep goes on
        return {
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
            "seconds": time.perf_counter() - start,
        }
    ev = agent.evaluation
    return {
        "eval_mean": ev.mean if ev else None,
        "eval_std": ev.std if ev else None,
        "seconds": time.perf_counter() - start,
    }


def plan_sweep(algo: str, env: Any, seeds: list[int], grid: dict[str, list[Any]], fixed: dict[str, Any],
               sweep_dir: str | Path) -> list[dict[str, Any]]:  # fmt: skip
    """Every (grid point, seed) trial with its run directory; each config is validated here, before
    anything runs, so a bad value fails the sweep at once with the config's own error."""
    import itertools

    from pgrad.train import resolve_config

    if not seeds:
        raise ValueError("a sweep needs at least one seed")
    spec = EnvSpec.from_user(env)
    clash = sorted(set(grid) & ({"seed", "run_dir", "env"} | set(fixed)))
    if clash:
        raise ValueError(f"{clash[0]!r} cannot be both swept and fixed (seed, env and run_dir are set by the sweep)")
    names = sorted(grid)
    trials = []
    for values in itertools.product(*(grid[n] for n in names)):
        params = dict(zip(names, values, strict=True))
        tag = ",".join(f"{n}={v}" for n, v in params.items()) or "default"
        for seed in seeds:
            run_dir = Path(sweep_dir) / f"{tag}-seed{seed}".replace("/", "_")
            overrides = {"save_final_checkpoint": False} | fixed | params  # a trial's result is its agent
            overrides |= {"seed": seed, "run_dir": str(run_dir), "progress_bar": False}
            resolve_config(algo, spec.name, "auto", overrides, registered=spec.id is not None)  # ValueError naming it
            trials.append({"params": params, "seed": seed, "run_dir": str(run_dir), "overrides": overrides})
    return trials


def sweep(
    algo: str,
    env: Any = "CartPole-v1",
    seeds: list[int] | range = (0, 1, 2),
    grid: dict[str, list[Any]] | None = None,
    sweep_dir: str | Path | None = None,
    ray_address: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    wrappers: list[Any] | None = None,
    **fixed: Any,
) -> dict[str, Any]:
    """``pgrad.sweep``: every (grid point, seed) of ``algo`` as a Ray task, one run directory each;
    ``env``, ``env_kwargs`` and ``wrappers`` as ``pgrad.train`` takes them, ``fixed`` config fields
    for every trial. Returns the ``sweep.json`` record (with the summary over seeds)."""
    spec = EnvSpec.from_user(env, env_kwargs, wrappers)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep_dir = sweep_dir or f"runs/sweep-{algo}-{spec.name.replace(':', '.')}-{stamp}"
    return run_sweep(algo, spec, list(seeds), dict(grid or {}), fixed, sweep_dir, ray_address)


def run_sweep(algo: str, env: Any, seeds: list[int], grid: dict[str, list[Any]], fixed: dict[str, Any],
              sweep_dir: str | Path, ray_address: str | None = None, on_done=None) -> dict[str, Any]:  # fmt: skip
    """Run every trial as a Ray task (one CPU each), write ``sweep.json`` and ``summary.md``.
    ``env`` is anything ``pgrad.train`` takes (an ``EnvSpec`` with kwargs and wrappers too)."""
    from pgrad.checkpoint import atomic_write

    spec = EnvSpec.from_user(env)
    env = spec.name if spec.id is not None else spec  # ids travel as text, factories pickled by Ray
    sweep_dir = Path(sweep_dir)
    trials = plan_sweep(algo, env, seeds, grid, fixed, sweep_dir)
    existing = [t["run_dir"] for t in trials if Path(t["run_dir"]).exists()]
    if existing and not fixed.get("overwrite"):
        raise FileExistsError(f"{existing[0]} exists; choose another --sweep-dir or pass --set overwrite=true")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    ray = init_ray(ray_address)
    task = ray.remote(num_cpus=1)(_trial)
    refs = {task.remote(algo, env, t["overrides"]): i for i, t in enumerate(trials)}
    while refs:
        (ref,), _ = ray.wait(list(refs), num_returns=1)
        i = refs.pop(ref)
        trials[i].update(ray.get(ref))
        if on_done is not None:
            on_done(trials[i])
    summary = summarize_sweep(trials)
    record = {
        "algo": algo,
        "env": spec.name,
        "env_spec": spec.to_json(),
        "seeds": seeds,
        "grid": grid,
        "fixed": fixed,
        "trials": trials,
        "summary": summary,
    }
    atomic_write(sweep_dir / "sweep.json", json.dumps(record, indent=1, default=str).encode())
    atomic_write(sweep_dir / "summary.md", sweep_markdown(algo, spec.name, summary).encode())
    return record


def summarize_sweep(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per grid point: mean ± std of the final evaluation over its seeds, best first."""
    groups: dict[str, dict[str, Any]] = {}
    for t in trials:
        key = json.dumps(t["params"], sort_keys=True)
        g = groups.setdefault(key, {"params": t["params"], "returns": [], "failed": 0})
        if t.get("eval_mean") is None:
            g["failed"] += 1
        else:
            g["returns"].append(t["eval_mean"])
    rows = []
    for g in groups.values():
        r = np.array(g["returns"], dtype=float)
        rows.append({
            "params": g["params"], "seeds": len(r), "failed": g["failed"],
            "mean": float(r.mean()) if len(r) else None, "std": float(r.std()) if len(r) else None,
            "min": float(r.min()) if len(r) else None,
        })  # fmt: skip
    return sorted(rows, key=lambda row: -np.inf if row["mean"] is None else -row["mean"])


def sweep_markdown(algo: str, env: str, summary: list[dict[str, Any]]) -> str:
    lines = [f"# Sweep: {algo} on {env}", "", "| parameters | seeds | eval return mean ± std | min | failed |",
             "|---|---|---|---|---|"]  # fmt: skip
    for row in summary:
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items()) or "(preset)"
        score = "-" if row["mean"] is None else f"{row['mean']:.1f} ± {row['std']:.1f}"
        low = "-" if row["min"] is None else f"{row['min']:.1f}"
        lines.append(f"| {params} | {row['seeds']} | {score} | {low} | {row['failed']} |")
    return "\n".join(lines) + "\n"

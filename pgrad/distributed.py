"""Sampling on Ray: rollout workers as actors, the learner in this process.

``--workers N`` splits the ``n_envs`` environments of an on-policy run into N contiguous slices,
one per Ray actor. Each :class:`RolloutWorker` owns a vector env of its slice (sub-env ``i`` seeded
``seed + i`` as in a single process) and a copy of the policy; per rollout the learner puts the
weights in the object store once, every worker collects ``n_steps`` steps and returns them, and the
learner concatenates the slices into the usual rollout buffer and runs the algorithm's unchanged
``update``. Actions are drawn from one generator per environment
(:class:`pgrad.distributions.EnvGenerators`), so the split changes no sample: a run with N workers
equals the single-process run with the same seed and ``n_envs`` (tested). REINFORCE's whole-episode
batches work the same way (:class:`DistributedEpisodeLoop`).

Also here: A3C's asynchronous learner (:class:`AsyncGradientLoop`, workers return gradients) and
``pgrad sweep`` (:func:`run_sweep`, one Ray task per trial).

A worker that dies (its process killed, its node lost) is replaced by a new actor that is given the
state the dead one had before the rollout (observations, simulator state, action generators), and
that rollout is collected again: nothing is dropped, and for simulators whose state pgrad can copy
(classic control, toy text) the result is the same as if nothing had happened.

Ray is an optional dependency (``pip install 'pgrad[distributed]'``); ``ray_address`` joins an
existing cluster, otherwise a local runtime starts with this machine's cores.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgrad.algos.base import EpisodeLoop, EpisodeStats, OnPolicyLoop, check_finite
from pgrad.config import schedule
from pgrad.distributions import EnvGenerators
from pgrad.envs import make_vec_env
from pgrad.networks import ActorCritic


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
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **quiet)
    return ray


def env_slices(n_envs: int, workers: int) -> list[range]:
    """Contiguous, equal slices of the env indices, one per worker."""
    if workers < 1 or n_envs % workers:
        raise ValueError(f"workers={workers} is invalid: must be >= 1 and divide n_envs={n_envs}")
    size = n_envs // workers
    return [range(k * size, (k + 1) * size) for k in range(workers)]


class RolloutWorker:
    """One slice of the environments and a policy copy (run as a Ray actor)."""

    def __init__(self, cfg, env_ids: list[int], spec: dict, action_mode: str = "clip"):
        torch.set_num_threads(1)
        self.env_ids = list(env_ids)
        self.n_total, self.rows = cfg.n_envs, slice(self.env_ids[0], self.env_ids[-1] + 1)
        self.env = make_vec_env(
            cfg.env,
            len(self.env_ids),
            cfg.seed + self.env_ids[0],  # sub-env i of the run is seeded seed + i, wherever it lives
            cfg.vectorization,
            gamma=cfg.gamma,
            action_mode=action_mode,
        )
        self.policy = ActorCritic.from_spec(spec)
        self.generators = EnvGenerators(cfg.seed + 1, self.env_ids)  # the algorithms' action streams
        self.obs: np.ndarray | None = None

    def pid(self) -> int:
        return os.getpid()

    def get_state(self) -> dict[str, Any]:
        """What decides this worker's next rollout (pickled by Ray between processes)."""
        env = self.env
        return {
            "obs": self.obs,
            "generators": self.generators.checkpoint_state(),
            "sim": env.sim_state() if env.exact_state else None,
            "episode": (env._ep_return.copy(), env._ep_length.copy()),
        }

    def set_state(self, state: dict[str, Any] | None) -> None:
        if state is None:
            return
        self.obs = state["obs"]
        self.generators.load_checkpoint_state(state["generators"])
        if state["sim"] is not None:
            self.env.load_sim_state(state["sim"])
        elif self.obs is not None:
            self.obs = None  # cannot copy this simulator: new episodes
        self.env._ep_return[:], self.env._ep_length[:] = state["episode"]

    def _act(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions for the slice, as ``policy.act(obs, generators)`` draws them in one process."""
        dist, _ = self.policy(self._full_batch(obs))
        return dist[self.rows].sample(self.generators)

    @torch.inference_mode()
    def episodes(self, weights: dict[str, torch.Tensor], quota: int, seeded_reset: bool) -> dict[str, Any]:
        """Every env of the slice runs ``quota`` whole episodes from a reset (REINFORCE's batch)."""
        self.policy.load_state_dict(weights)
        env, n = self.env, len(self.env_ids)
        obs = torch.as_tensor(env.reset() if seeded_reset else env.reset(seed=None))
        finished = np.zeros(n, np.int64)
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "actions", "rewards", "dones", "valid")}
        ended, t = [], 0
        while (finished < quota).any():
            active = finished < quota
            a = self._act(obs)
            next_obs, rewards, terminated, truncated, _ = env.step(a.numpy())
            dones = terminated | truncated
            for name, value in zip(rows, (obs.numpy(), a.numpy(), rewards, dones, active), strict=True):
                rows[name].append(value)
            ended += [(t, self.env_ids[i]) for i in np.flatnonzero(dones)]
            finished += dones & active
            obs, t = torch.as_tensor(next_obs), t + 1
        self.obs, self.t = next_obs, t
        returns, lengths = env.pop_episodes()
        out: dict[str, Any] = {k: np.stack(v) for k, v in rows.items()}
        out["rewards"] = out["rewards"].astype(np.float32)
        return out | {"length": t, "episodes": [(*e, r, m) for e, r, m in zip(ended, returns, lengths, strict=True)]}

    @torch.inference_mode()
    def pad(self, steps: int) -> dict[str, Any]:
        """``steps`` more unrecorded steps, as one process takes them while other envs finish."""
        env, obs, ended = self.env, torch.as_tensor(self.obs), []
        for j in range(steps):
            next_obs, _, terminated, truncated, _ = env.step(self._act(obs).numpy())
            ended += [(self.t + j, self.env_ids[i]) for i in np.flatnonzero(terminated | truncated)]
            obs = torch.as_tensor(next_obs)
        self.obs = obs.numpy()
        returns, lengths = env.pop_episodes()
        episodes = [(*e, r, m) for e, r, m in zip(ended, returns, lengths, strict=True)]
        return {"episodes": episodes, "state": self.get_state()}

    def _full_batch(self, obs: torch.Tensor) -> torch.Tensor:
        """This slice's rows at their places in a batch of all ``n_envs`` rows (the others zero).

        A matrix product's rounding depends on the batch's shape and a row's place in it, not on
        the other rows' values: run on the full-shape batch, every row comes out bit for bit as in
        the single-process run, which is what makes the two equal.
        """
        full = torch.zeros((self.n_total, *obs.shape[1:]), dtype=obs.dtype)
        full[self.rows] = obs
        return full

    @torch.inference_mode()
    def rollout(self, weights: dict[str, torch.Tensor], n_steps: int) -> dict[str, Any]:
        """``n_steps`` steps of every env in the slice, as :meth:`OnPolicyLoop.collect` takes them."""
        self.policy.load_state_dict(weights)
        env, policy = self.env, self.policy
        if self.obs is None:
            self.obs = env.reset()
        n = len(self.env_ids)
        out = {
            "obs": np.empty((n_steps, n, *env.obs_shape), np.float32),
            "rewards": np.empty((n_steps, n), np.float32),
            "terminated": np.empty((n_steps, n), bool),
            "truncated": np.empty((n_steps, n), bool),
        }
        actions, log_probs, values, final_values, episodes = [], [], [], [], []
        obs = torch.as_tensor(self.obs)
        for t in range(n_steps):
            dist, v = policy(self._full_batch(obs))
            dist, v = dist[self.rows], v[self.rows]
            a = dist.sample(self.generators)  # = policy.act(obs, generators) of the single process
            logp = dist.log_prob(a)
            next_obs, rewards, terminated, truncated, real_next_obs = env.step(a.numpy())
            out["obs"][t], out["rewards"][t], out["terminated"][t], out["truncated"][t] = (
                obs.numpy(), rewards, terminated, truncated,
            )  # fmt: skip
            actions.append(a), log_probs.append(logp), values.append(v)
            cut = truncated & ~terminated
            if cut.any():
                envs = np.flatnonzero(cut)
                final_values.append(
                    (t, envs, policy.value(self._full_batch(torch.as_tensor(real_next_obs)))[self.rows][envs])
                )
            for i in np.flatnonzero(terminated | truncated):
                episodes.append((t, self.env_ids[i]))
            obs = torch.as_tensor(next_obs)
        self.obs = next_obs
        returns, lengths = env.pop_episodes()
        out |= {
            "actions": torch.stack(actions),
            "log_probs": torch.stack(log_probs),
            "values": torch.stack(values),
            "last_values": policy.value(self._full_batch(obs))[self.rows],
            "final_values": final_values,
            "episodes": [(t, i, r, length) for (t, i), r, length in zip(episodes, returns, lengths, strict=True)],
            "state": self.get_state(),
        }
        return out


class WorkerPool:
    """The rollout workers of one run, and what it takes to replace one that dies.

    ``worker_states[k]`` is worker k's state at the start of the current update (returned by its
    last call of the previous one). Every call of the update is logged, so a replacement is given
    that state and replays the calls before the failed one: the update's data come out the same.
    """

    def __init__(self, cfg, spec: dict, action_mode: str):
        if cfg.normalize_obs or cfg.normalize_reward:
            raise ValueError(
                f"workers={cfg.workers} with normalize_obs/normalize_reward is not supported: the running "
                "statistics would differ per worker; train with workers=0 or without normalisation"
            )
        self.ray = ray = init_ray(cfg.ray_address)
        self.slices = env_slices(cfg.n_envs, cfg.workers)
        remote = ray.remote(num_cpus=1)(RolloutWorker)
        self.make_worker = lambda k: remote.remote(cfg, list(self.slices[k]), spec, action_mode)
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

    def gather(self, method: str, args: list[tuple]) -> list[dict]:
        """``worker_k.method(*args[k])`` on every worker in parallel; results in worker order."""
        ray = self.ray
        refs = []
        for k, w in enumerate(self.workers):
            self.calls[k].append((method, args[k]))
            refs.append(getattr(w, method).remote(*args[k]))
        results: list[dict] = []
        for k, ref in enumerate(refs):
            for attempt in range(3):
                try:
                    results.append(ray.get(ref))
                    break
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                    if attempt == 2:
                        raise RuntimeError(f"rollout worker {k} died three times in a row; giving up") from None
                    self._replace(k)
                    ref = getattr(self.workers[k], method).remote(*args[k])
        return results

    def end_update(self, results: list[dict]) -> None:
        self.worker_states = [res["state"] for res in results]

    def put_weights(self, policy: torch.nn.Module):
        return self.ray.put({k: v.detach().cpu() for k, v in policy.state_dict().items()})

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)


def _sorted_episodes(results: list[dict]) -> tuple[list[float], list[int]]:
    """The workers' finished episodes in the order one process sees them: by step, then env."""
    episodes = sorted(e for res in results for e in res["episodes"])
    return [r for _, _, r, _ in episodes], [n for _, _, _, n in episodes]


class DistributedOnPolicyLoop(OnPolicyLoop):
    """:class:`OnPolicyLoop` whose ``collect`` gathers the rollout from Ray workers."""

    not_state = ("pool",)

    def __init__(self, algo, env, cfg, device: torch.device, action_mode: str = "clip"):
        super().__init__(algo, env, cfg.n_steps, cfg.total_steps, device)
        self.pool = WorkerPool(cfg, algo.policy.spec, action_mode)

    def _gather(self, weights) -> list[dict]:
        self.pool.begin_update()
        results = self.pool.gather("rollout", [(weights, self.n_steps)] * len(self.pool.workers))
        self.pool.end_update(results)
        return results

    def collect(self) -> tuple[list[float], list[int]]:
        buf, device = self.buf, self.device
        results = self._gather(self.pool.put_weights(self.algo.policy))
        final: dict[int, list[tuple[np.ndarray, torch.Tensor]]] = {}
        last_values = torch.empty(buf.n_envs, device=device)
        for res, envs in zip(results, self.pool.slices, strict=True):
            cols = slice(envs.start, envs.stop)
            buf.obs[:, cols] = torch.from_numpy(res["obs"].copy()).to(device)
            buf.actions[:, cols] = res["actions"].to(device)
            buf.log_probs[:, cols] = res["log_probs"].to(device)
            buf.values[:, cols] = res["values"].to(device)
            buf.rewards[:, cols] = torch.from_numpy(res["rewards"].copy()).to(device)
            buf.terminated[:, cols] = torch.from_numpy(res["terminated"].copy()).to(device)
            buf.truncated[:, cols] = torch.from_numpy(res["truncated"].copy()).to(device)
            last_values[cols] = res["last_values"].to(device)
            for t, local, values in res["final_values"]:
                final.setdefault(t, []).append((local + envs.start, values.to(device)))
        final_values = {
            t: (np.concatenate([e for e, _ in parts]), torch.cat([v for _, v in parts])) for t, parts in final.items()
        }
        buf.finish(last_values, final_values)
        return _sorted_episodes(results)

    def run(self, on_update) -> int:
        try:
            return super().run(on_update)
        finally:
            self.pool.close()


class DistributedEpisodeLoop(EpisodeLoop):
    """REINFORCE's :class:`EpisodeLoop` on Ray workers, in two phases per update.

    Each worker runs its envs to their quota of whole episodes (``L_k`` steps). One process steps
    every env until the *last* one is done (``L = max_k L_k``), so the learner then has each worker
    take the ``L − L_k`` unrecorded steps its envs would have taken too (acting, so the envs and the
    action streams advance exactly as they would in one process). The batch is the workers' steps,
    padded with invalid rows to ``L``; its valid rows are the single-process batch's.
    """

    not_state = ("pool",)

    def __init__(self, algo, env, cfg, device: torch.device, action_mode: str = "clip"):
        super().__init__(algo, env, cfg.episodes_per_update, cfg.total_steps, device)
        self.pool = WorkerPool(cfg, algo.policy.spec, action_mode)

    def collect(self) -> tuple[list[float], list[int]]:
        pool, batch, device = self.pool, self.batch, self.device
        pool.begin_update()
        weights = pool.put_weights(self.algo.policy)
        seeded_reset = not self.started
        self.started = True
        first = pool.gather("episodes", [(weights, self.quota, seeded_reset)] * len(pool.workers))
        L = max(res["length"] for res in first)
        second = pool.gather("pad", [(L - res["length"],) for res in first])
        pool.end_update(second)
        names = ("obs", "actions", "rewards", "dones", "valid")

        def padded(res: dict, name: str) -> np.ndarray:  # invalid zero rows after the worker's last step
            data = res[name]
            return np.concatenate([data, np.zeros((L - res["length"], *data.shape[1:]), data.dtype)])

        data = {name: np.concatenate([padded(res, name) for res in first], axis=1) for name in names}
        batch.clear()
        for t in range(L):
            obs, actions = (torch.from_numpy(data[k][t]).to(device) for k in ("obs", "actions"))
            batch.store(obs, actions, data["rewards"][t], data["dones"][t], data["valid"][t])
        return _sorted_episodes(first + second)

    def run(self, on_update) -> int:
        try:
            return super().run(on_update)
        finally:
            self.pool.close()


class GradientWorker:
    """A3C's worker (a Ray actor): its slice of the envs, a policy copy, and the actor-critic loss.

    Per task it loads the learner's weights, collects ``n_steps`` steps with the same loop code
    as a single process, and returns the gradient of the A2C loss on that rollout.
    """

    def __init__(self, cfg, env_ids: list[int], action_mode: str = "clip"):
        import dataclasses

        from pgrad.algos.actor_critic import A2C

        torch.set_num_threads(1)
        self.env_ids = list(env_ids)
        env = make_vec_env(cfg.env, len(self.env_ids), cfg.seed + self.env_ids[0], cfg.vectorization,
                           gamma=cfg.gamma, action_mode=action_mode)  # fmt: skip
        local = dataclasses.replace(cfg, n_envs=len(self.env_ids), workers=1)
        self.algo = A2C(local, env.observation_space, env.action_space, torch.device("cpu"))
        self.algo.action_generator = EnvGenerators(cfg.seed + 1, self.env_ids)
        self.loop = OnPolicyLoop(self.algo, env, cfg.n_steps, cfg.total_steps, torch.device("cpu"))

    def pid(self) -> int:
        return os.getpid()

    def gradient(self, weights: dict[str, torch.Tensor], version: int) -> dict[str, Any]:
        policy = self.algo.policy
        policy.load_state_dict(weights)
        returns, lengths = self.loop.collect()
        loss, metrics = self.algo.loss(self.loop.buf)
        grads = torch.autograd.grad(loss, list(policy.parameters()))
        return {
            "grads": [g.detach() for g in grads],
            "version": version,
            "steps": self.loop.n_steps * len(self.env_ids),
            "episodes": (returns, lengths),
            "metrics": metrics,
        }


class AsyncGradientLoop:
    """A3C's learner: apply each worker's gradient to the shared parameters as it arrives.

    Worker k computes its gradient on the weights of version v (the number of updates applied when
    it was sent); by the time it arrives the learner may be at v + s. ``charts/staleness`` logs s.
    The learner then sends that worker the newest weights for its next rollout.
    """

    not_state = ("workers", "ray", "make_worker", "pending")

    def __init__(self, algo, env, cfg, device: torch.device, action_mode: str = "clip"):
        if cfg.normalize_obs or cfg.normalize_reward:
            raise ValueError("a3c with normalize_obs/normalize_reward is not supported: each worker would "
                             "keep its own statistics")  # fmt: skip
        self.algo, self.cfg, self.device = algo, cfg, device
        self.ray = ray = init_ray(cfg.ray_address)
        slices = env_slices(cfg.n_envs, cfg.workers)
        remote = ray.remote(num_cpus=1)(GradientWorker)
        self.make_worker = lambda k: remote.remote(cfg, list(slices[k]), action_mode)
        self.workers = [self.make_worker(k) for k in range(cfg.workers)]
        self.stats = EpisodeStats()
        self.global_step = self.version = 0
        self.restarts = 0

    def _weights(self):
        return self.ray.put({k: v.detach().cpu() for k, v in self.algo.policy.state_dict().items()})

    def run(self, on_update) -> int:
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
                check_finite(metrics, self.global_step, algo.policy)
                on_update(self.global_step, self.stats.add_episodes(*res["episodes"]) | metrics)
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


def _trial(algo: str, env: str, overrides: dict[str, Any]) -> dict[str, Any]:
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


def plan_sweep(algo: str, env: str, seeds: list[int], grid: dict[str, list[Any]], fixed: dict[str, Any],
               sweep_dir: str | Path) -> list[dict[str, Any]]:  # fmt: skip
    """Every (grid point, seed) trial with its run directory; each config is validated here, before
    anything runs, so a bad value fails the sweep at once with the config's own error."""
    import itertools

    from pgrad.train import resolve_config

    if not seeds:
        raise ValueError("a sweep needs at least one seed")
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
            overrides = fixed | params | {"seed": seed, "run_dir": str(run_dir), "progress_bar": False}
            resolve_config(algo, env, "auto", overrides)  # raises ValueError naming the field and value
            trials.append({"params": params, "seed": seed, "run_dir": str(run_dir), "overrides": overrides})
    return trials


def run_sweep(algo: str, env: str, seeds: list[int], grid: dict[str, list[Any]], fixed: dict[str, Any],
              sweep_dir: str | Path, ray_address: str | None = None, on_done=None) -> dict[str, Any]:  # fmt: skip
    """Run every trial as a Ray task (one CPU each), write ``sweep.json`` and ``summary.md``."""
    from pgrad.checkpoint import atomic_write

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
        "env": env,
        "seeds": seeds,
        "grid": grid,
        "fixed": fixed,
        "trials": trials,
        "summary": summary,
    }
    atomic_write(sweep_dir / "sweep.json", json.dumps(record, indent=1, default=str).encode())
    atomic_write(sweep_dir / "summary.md", sweep_markdown(algo, env, summary).encode())
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

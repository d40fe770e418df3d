"""Many seeds of one configuration in one process: ``pgrad train ppo --seeds 0-15`` (issue 19;
PPO, A2C, the one-step actor-critic, SAC, TD3 and DDPG).

Each seed is an ordinary run, ``<parent>/seed-<s>``, with everything its single run has: config,
envs, normaliser, generators, optimizer, logger, evaluations, checkpoints, curve; ``pgrad eval``,
``plot`` and ``--resume`` take one seed's directory as they take any run. What the seeds share is
the arithmetic of the update: their networks are stacked (:mod:`pgrad.stack`) and one batched pass
computes every seed's loss and gradient (the algorithm's ``update_seeds``). The runs advance in
lockstep: each seed collects its rollout (off-policy: takes its vector step and, when a round is
due, samples its replay buffer), one stacked update, then each seed logs, evaluates and
checkpoints exactly where its single run would. ``parent/seeds.json`` lists the seeds' runs, so
``pgrad plot parent`` draws their mean ± std and ``pgrad train --resume parent`` continues them all.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
import signal
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pgrad import checkpoint
from pgrad.agent import Agent
from pgrad.algos import get_algo
from pgrad.algos.actor_critic import update_seeds as a2c_update_seeds
from pgrad.algos.base import OffPolicyLoop, precision
from pgrad.algos.ddpg import DeterministicStacks
from pgrad.algos.ddpg import update_seeds as deterministic_update_seeds
from pgrad.algos.ppo import update_seeds as ppo_update_seeds
from pgrad.algos.sac import SACStacks
from pgrad.algos.sac import update_seeds as sac_update_seeds
from pgrad.config import RunConfig
from pgrad.envs import check_spaces
from pgrad.envspec import EnvSpec, check_user_env
from pgrad.stack import StackedParameters
from pgrad.train import Interrupted, Trainer, prepared, resumed, stop_signals
from pgrad.trust_region import update_seeds as trust_region_update_seeds

# the algorithms with an update for many seeds at once: on-policy ones (one stacked policy), and
# off-policy ones (how to stack their networks, and the update)
STACKED = {
    "ppo": ppo_update_seeds,
    "a2c": a2c_update_seeds,
    "actor_critic": a2c_update_seeds,
    "trpo": trust_region_update_seeds,
    "npg": trust_region_update_seeds,
}
OFF_POLICY = {
    "sac": (SACStacks.of, sac_update_seeds),
    "td3": (DeterministicStacks.of, deterministic_update_seeds),
    "ddpg": (DeterministicStacks.of, deterministic_update_seeds),
}
# what a stacked run cannot take: (field, the allowed value, why), for every algorithm and per algorithm
REFUSED = [
    ("workers", 0, "the seeds' envs step in this process"),
    ("loss", "clip", "the KL-penalty objectives are not stacked"),
    ("rnn", "none", "recurrent policies are not stacked"),
]
ROUNDS = ("train_freq_unit", "step", "rounds every few episodes would fall at different steps for each seed")
REFUSED_BY_ALGO = {
    "sac": [
        ("variant", "v2", "SAC v1's V network is not stacked"),
        ("use_sde", False, "gSDE's held exploration is not stacked"),
        ROUNDS,
    ],
    "td3": [ROUNDS],
    "ddpg": [ROUNDS],
}
SEEDS_FILE = "seeds.json"


def parse_seeds(text: str) -> list[int]:
    """``"0-15"``, ``"0,1,2"`` or ``"0-3,8"``: distinct seeds >= 0, in the order given."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            seeds += list(range(int(low), int(high) + 1)) if high else [int(low)]
    except ValueError:
        seeds = []
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(
            f"--seeds {text!r} is invalid: two or more distinct seeds >= 0, as a range 0-15, a list 0,1,2 or both (0-3,8)"
        )
    return seeds


def check_stackable(algo: str, cfg: RunConfig) -> None:
    """One line naming what a stacked run cannot take, before anything is built."""
    if algo not in STACKED and algo not in OFF_POLICY:
        raise ValueError(
            f"--seeds is invalid for {algo}: it trains {', '.join([*STACKED, *OFF_POLICY])} as one stacked model; train "
            f"{algo}'s seeds one run at a time, or in parallel with pgrad sweep {algo} --seeds 0,1,2"
        )
    for name, allowed, why in REFUSED + REFUSED_BY_ALGO.get(algo, []):
        value = getattr(cfg, name, allowed)
        if value != allowed:
            raise ValueError(f"{name}={value!r} is invalid: must be {allowed!r} with --seeds ({why})")


def seeds_dir(algo: str, cfg: RunConfig, seeds: list[int]) -> Path:
    """``cfg.run_dir``, or ``runs/<algo>-<env>-seeds-<first>-<last>-<time>``."""
    if cfg.run_dir is not None:
        return Path(cfg.run_dir)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{algo}-{cfg.env}-seeds-{seeds[0]}-{seeds[-1]}-{stamp}"


def run_seeds(
    algo: str,
    cfg: RunConfig,
    seeds: list[int],
    sources: dict[str, str] | None = None,
    preset: str | None = None,
    spec: EnvSpec | None = None,
    check_env: bool = True,
    callbacks: Any = None,
) -> list[Agent]:
    """Train ``algo`` with ``cfg`` once per seed, stacked; returns the seeds' agents in order.
    ``callbacks`` see every seed's run (``RunInfo.run_dir`` tells them apart)."""
    entry = get_algo(algo)
    check_stackable(entry.name, cfg)
    spec = spec or EnvSpec.from_user(cfg.env)
    if check_env and not spec.builtin:
        check_user_env(spec, check_spaces)
    parent = seeds_dir(entry.name, cfg, seeds)
    if (parent / SEEDS_FILE).exists() and not cfg.overwrite:
        raise FileExistsError(
            f"run directory {str(parent)!r} holds a stacked run already; pass --overwrite (overwrite=True) to "
            f"replace it, --resume {parent} to continue it, or choose another --run-dir"
        )
    if (parent / "config.json").exists():
        raise FileExistsError(f"run directory {str(parent)!r} is a single run's; choose another --run-dir for --seeds")
    created = not parent.exists()
    configs = [
        cfg.replace(
            seed=seed, run_dir=str(parent / f"seed-{seed}"), progress_bar=cfg.progress_bar and i == 0, verbose=0
        )
        for i, seed in enumerate(seeds)
    ]
    begun = False
    try:
        with contextlib.ExitStack() as held:  # a failed start: each seed's directory goes (prepared)
            trainers = [held.enter_context(prepared(entry.name, c, spec, callbacks)) for c in configs]
            stack = stacks_for(entry.name, trainers)  # refuses what it cannot stack
            for trainer in trainers:
                trainer.begin(sources, preset)
            begun = True
            record = {"algo": entry.name, "env": cfg.env, "seeds": seeds, "runs": [f"seed-{s}" for s in seeds],
                      "verbose": cfg.verbose}  # fmt: skip
            checkpoint.atomic_write(parent / SEEDS_FILE, json.dumps(record, indent=2).encode())
            return train_stacked(entry.name, trainers, stack, parent, cfg.verbose)
    except BaseException:
        if created and not begun:
            shutil.rmtree(parent, ignore_errors=True)  # and the parent, when this start made it
        raise


def resume_seeds(parent: str | Path, total_steps: int | None = None, callbacks: Any = None) -> list[Agent]:
    """Continue a stacked run from its seeds' last checkpoints (``pgrad train --resume parent``)."""
    parent = Path(parent)
    try:
        record = json.loads((parent / SEEDS_FILE).read_text())
        algo, runs = record["algo"], [parent / run for run in record["runs"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise checkpoint.CheckpointError(f"{parent / SEEDS_FILE} is unreadable ({type(e).__name__}: {e})") from None
    if algo not in STACKED and algo not in OFF_POLICY:
        raise checkpoint.CheckpointError(f"{parent / SEEDS_FILE}: algo {algo!r} has no stacked update")
    with contextlib.ExitStack() as held:
        started = [held.enter_context(resumed(run, None, total_steps, callbacks)) for run in runs]
        trainers = [trainer for trainer, _ in started]
        stack = stacks_for(algo, trainers)
        steps = {step for _, step in started}
        if len(steps) != 1:
            raise checkpoint.CheckpointError(
                f"{parent}: the seeds' checkpoints are at different steps ({', '.join(f'{s:,}' for s in sorted(steps))}); "
                "resume each seed's run on its own: pgrad train --resume " + str(runs[0])
            )
        return train_stacked(algo, trainers, stack, parent, record.get("verbose", 1), resume_step=steps.pop())


def stacks_for(algo: str, trainers: list[Trainer]) -> Any:
    """The seeds' networks stacked: the policies of an on-policy algorithm, what an off-policy one needs."""
    if algo in OFF_POLICY:
        return OFF_POLICY[algo][0]([t.loop.algo for t in trainers])
    return StackedParameters([t.loop.algo.policy for t in trainers])


def train_stacked(
    algo: str,
    trainers: list[Trainer],
    stack: Any,
    parent: Path,
    verbose: int,
    resume_step: int | None = None,
) -> list[Agent]:
    """The lockstep loop of the seeds' runs (:meth:`~pgrad.algos.base.OnPolicyLoop.run`,
    :meth:`~pgrad.algos.base.OffPolicyLoop.run`): collect, one stacked update, then each seed's
    report and poll (checkpoints, evaluations, stops). A seed a callback stops drops out; a signal
    stops all at the same step, each with a checkpoint."""
    advance = (
        partial(advance_off_policy, OFF_POLICY[algo][1])
        if algo in OFF_POLICY
        else partial(advance_on_policy, STACKED[algo])
    )
    loops = [t.loop for t in trainers]
    if verbose >= 1:
        seeds = [t.cfg.seed for t in trainers]
        Console(stderr=True).print(
            f"{algo} on {escape(trainers[0].cfg.env)}: {len(trainers)} seeds in one process, runs in "
            f"{escape(str(parent))}/seed-S"
            + (f"; the progress line is seed {seeds[0]}'s" if trainers[0].cfg.progress_bar else "")
        )
    final: list[int | None] = [None] * len(trainers)  # a seed's last step, once its run has stopped
    with stop_signals(trainers), contextlib.ExitStack() as sessions:
        loggers = [sessions.enter_context(t.session(resume_step)) for t in trainers]
        while any(step is None and not finished(loop) for step, loop in zip(final, loops, strict=True)):
            advance(trainers, loggers, stack, [step is None for step in final])
            poll_all(trainers, loops, final, parent)
        for k, (trainer, loop) in enumerate(zip(trainers, loops, strict=True)):
            trainer.elapsed = loggers[k].elapsed
            final[k] = loop.global_step if final[k] is None else final[k]
            trainer.final_checkpoint(final[k])
    agents = [trainer.finish(step) for trainer, step in zip(trainers, final, strict=True)]
    if verbose >= 1:
        print_seeds_summary(Console(), algo, trainers, final, parent)
    return agents


def finished(loop: Any) -> bool:
    """Whether a seed's loop has done its run's work (its updates; off-policy: its env steps)."""
    if isinstance(loop, OffPolicyLoop):
        return loop.global_step >= loop.cfg.total_steps
    return loop.update >= loop.n_updates


def advance_on_policy(
    update, trainers: list[Trainer], loggers: list, stack: StackedParameters, active: list[bool]
) -> None:
    """Each running seed collects its rollout; one stacked update; each reports it."""
    loops = [t.loop for t in trainers]
    stats = [loop.next_rollout() if go else None for loop, go in zip(loops, active, strict=True)]
    with precision(loops[0].algo.cfg, loops[0].device):
        metrics = update([loop.algo for loop in loops], [loop.buf for loop in loops], stack,
                         loops[0].progress_remaining(), active)  # fmt: skip
    for k in (k for k, go in enumerate(active) if go):
        trainer, loop = trainers[k], loops[k]
        trainer.guarded(partial(loop.updated, metrics[k], stats[k], partial(trainer.on_update, loggers[k])))


def advance_off_policy(update, trainers: list[Trainer], loggers: list, stacks: Any, active: list[bool]) -> None:
    """Each running seed takes its vector step; when a round is due (for all at once: the seeds step
    in lockstep), its gradient steps, each one stacked update of every seed's own replay sample;
    then each reports the round."""
    loops = [t.loop for t in trainers]
    due = [loop.env_step() if go else False for loop, go in zip(loops, active, strict=True)]
    if not any(due):
        return
    rounds = [loop.begin_round() if d else 0 for loop, d in zip(loops, due, strict=True)]
    metrics: list = [None] * len(loops)
    for _ in range(max(rounds)):
        batches = [loop.batch() if d else None for loop, d in zip(loops, due, strict=True)]
        with precision(loops[0].cfg, loops[0].device):
            metrics = update([loop.algo for loop in loops], batches, stacks)
    for k in (k for k, d in enumerate(due) if d):
        trainer, loop = trainers[k], loops[k]
        trainer.guarded(partial(loop.end_round, metrics[k], partial(trainer.on_update, loggers[k])))


def poll_all(trainers: list[Trainer], loops: list, final: list[int | None], parent: Path) -> None:
    """Each running seed's poll at the step all have reached: its checkpoint when due, the stop its
    callbacks asked for (that seed's run ends there); on a signal, a checkpoint of every running
    seed at this step, then all stop."""
    for k, (trainer, loop) in enumerate(zip(trainers, loops, strict=True)):
        if final[k] is None and trainer.guarded(partial(trainer.poll_due, loop.global_step)) is not None:
            final[k] = loop.global_step
    signum = next((t._stop_signal for t in trainers if t._stop_signal is not None), None)
    step = loops[0].global_step
    if signum is None or step >= trainers[0].cfg.total_steps:
        return
    for k, trainer in enumerate(trainers):
        if final[k] is None and trainer.checkpoint_step != loops[k].global_step:
            trainer.save_checkpoint(loops[k].global_step)
    raise Interrupted(
        f"{signal.Signals(signum).name}: stopped at step {step:,} with a checkpoint in each seed's run; "
        f"resume with: pgrad train --resume {parent}"
    )


def print_seeds_summary(console: Console, algo: str, trainers: list[Trainer], steps: list[int], parent: Path) -> None:
    cfg = trainers[0].cfg
    table = Table(title=escape(f"pgrad {algo} on {cfg.env}, {len(trainers)} seeds in one process"))
    for column in ("seed", "steps", "eval (deterministic)", "run directory"):
        table.add_column(column)
    means = []
    for trainer, step in zip(trainers, steps, strict=True):
        result = trainer.agent.evaluation
        if result is not None:
            means.append(result.mean)
        score = f"{result.mean:.1f} ± {result.std:.1f}" if result is not None else "–"
        table.add_row(str(trainer.cfg.seed), f"{step:,}", score, escape(str(trainer.run_dir)))
    if means:
        mean = sum(means) / len(means)
        spread = (sum((m - mean) ** 2 for m in means) / max(1, len(means) - 1)) ** 0.5
        table.add_row("all", "", f"{mean:.1f} ± {spread:.1f} over seeds", escape(str(parent)))
    console.print(table)
    console.print(f"wall time {trainers[0].elapsed:.1f} s; curves: pgrad plot {escape(str(parent))}")

"""The ``pgrad`` command: train, eval, plot, list, lab.

``pgrad train ALGO`` is generated from the algorithm's config dataclass by tyro, so every
hyperparameter is a flag with its default and help text; the (algo, env) preset is applied first
and explicit flags override it. Usage errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import errno
import io
import json
import math
import re
import sys
import time
from pathlib import Path

USAGE = """usage: pgrad <command> ...

commands:
  train ALGO [--env ENV] [--total-steps N] [--seed S] [--preset auto|none] [FLAGS]   train an agent
  train ALGO --zoo-file hyperparams/ALGO.yml --env ENV [FLAGS]                    an RL Zoo entry in place of the preset
  train ppo --seeds 0-15 [FLAGS]                                                  many seeds as one stacked model, a run each
  train --resume RUN_DIR [--total-steps N]                                        continue (or extend) a run
  eval RUN_DIR [--episodes 10] [--best] [--video out.mp4]                         evaluate a saved agent
  export RUN_DIR -o policy.onnx [--format onnx|torchscript] [--best]              the policy for deployment
  plot RUN_OR_SWEEP_DIR... [-o curves.png]                                        learning curves (mean ± std over seeds)
  list                                                                            algorithms and presets
  sweep ALGO --seeds 0,1,2 [--grid FIELD=V1,V2]... [--set FIELD=V]...             seeds × grid on Ray
  tune ALGO --env ENV --trials 50 [--storage sqlite:///study.db] [--workers K]     Optuna search (RL Zoo's spaces)
  lab variance|theory [--mdp chain] [...]                                         exact-gradient estimator lab

`pgrad train ALGO --help` lists every hyperparameter of ALGO."""


class UsageError(Exception):
    pass


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, token in enumerate(argv):
        if token == flag and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
    return None


def _take_flag(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """``flag``'s value (``--flag V`` or ``--flag=V``) and ``argv`` without it."""
    value = _flag_value(argv, flag)
    rest = [t for i, t in enumerate(argv)
            if not (t == flag or t.startswith(flag + "=") or (i > 0 and argv[i - 1] == flag))]  # fmt: skip
    return value, rest


def _given_fields(argv: list[str], fields: set[str]) -> set[str]:
    """Config fields the user set explicitly on the command line (``--x-y``, ``--x-y=v``, ``--no-x-y``)."""
    given = set()
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            if name.startswith("no_") and name[3:] in fields:
                name = name[3:]
            if name in fields:
                given.add(name)
    return given


def _one_line(tyro_error: str) -> str:
    """Tyro's boxed error panel, condensed to its message (the title border line is dropped)."""
    lines = [line for line in tyro_error.splitlines() if not line.lstrip().startswith(("╭", "╰"))]
    text = re.sub(r"[│─┃━]+", " ", " ".join(lines))
    text = re.sub(r"(For full helptext|Argument helptext).*", "", text)
    text = re.sub(r"Error parsing \w+: ", "", text)
    return re.sub(r"\s+", " ", text).strip()


def cmd_train(argv: list[str]) -> int:
    import tyro

    from pgrad.algos import get_algo
    from pgrad.envspec import EnvSpec
    from pgrad.train import resolve_config, resume, run

    if argv and (argv[0] == "--resume" or argv[0].startswith("--resume=")):
        run_dir, _, total_steps = _resume_args(argv)
        if (Path(run_dir) / "seeds.json").is_file():  # a stacked run of many seeds: all of them
            from pgrad.seeds import resume_seeds

            return _training(lambda: resume_seeds(run_dir, total_steps))
        return _training(lambda: resume(run_dir, None, total_steps))
    if not argv or argv[0].startswith("-"):
        raise UsageError("pgrad train needs an algorithm: pgrad train ALGO [flags] (see `pgrad list`)")
    entry = get_algo(argv[0])
    rest, env_kwargs, wrappers, check_env = _env_flags(argv[1:])
    preset, rest = _take_flag(rest, "--preset")
    zoo_file, rest = _take_flag(rest, "--zoo-file")
    seeds_text, rest = _take_flag(rest, "--seeds")
    seeds = None
    if seeds_text is not None:
        from pgrad.seeds import check_stackable, parse_seeds

        seeds = parse_seeds(seeds_text)
        if _flag_value(rest, "--seed") is not None:
            raise UsageError("--seeds replaces --seed: give one of them")
    zoo = None
    if zoo_file is not None:
        if preset is not None:
            raise UsageError("--zoo-file replaces the preset: give one of --zoo-file and --preset")
        from pgrad.zoo import read_zoo

        env_id = EnvSpec.from_user(_flag_value(rest, "--env") or entry.config_class.env).name
        zoo = read_zoo(zoo_file, entry.name, env_id, entry.config_class)
        env_kwargs, wrappers = zoo.env_kwargs | env_kwargs, [*zoo.wrappers, *wrappers]
    spec = EnvSpec.from_user(_flag_value(rest, "--env") or entry.config_class.env, env_kwargs, wrappers)
    env = spec.name
    base, sources, preset_name = resolve_config(entry.name, env, preset or "auto", None, spec.id is not None, zoo)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            cfg = tyro.cli(
                entry.config_class,
                args=rest,
                default=base,
                prog=f"pgrad train {entry.name}",
                description=f"Train {entry.name}: {entry.summary}. Defaults shown include the "
                + ("Zoo entry" if zoo else "preset")
                + f" for --env {env}"
                + (f" ({preset_name})." if preset_name else " (no preset)."),
            )
    except SystemExit as e:
        if e.code not in (0, None):
            raise UsageError(_one_line(captured.getvalue()) + f" (see pgrad train {entry.name} --help)") from None
        print(captured.getvalue(), end="", file=sys.stderr)
        print(ENV_FLAGS_HELP)  # after tyro's help: the flags it does not parse
        raise
    fields = {f.name for f in dataclasses.fields(entry.config_class)}
    for name in _given_fields(rest, fields):
        sources[name] = "user"
    if cfg.env != env:  # --env given twice, say: the spec follows the config's value
        spec = EnvSpec.from_user(cfg.env, env_kwargs, wrappers)
    if seeds is not None:
        from pgrad.seeds import run_seeds

        check_stackable(entry.name, cfg)
        return _training(lambda: run_seeds(entry.name, cfg, seeds, sources, preset_name, spec, check_env))
    return _training(lambda: run(entry.name, cfg, sources, preset_name, spec, check_env))


def _resume_args(argv: list[str]) -> tuple[str, None, int | None]:
    """``--resume RUN_DIR [--total-steps N]``: the run, and the total to extend it to."""
    usage = "usage: pgrad train --resume RUN_DIR [--total-steps N] (the run's config is read from RUN_DIR)"
    parser = argparse.ArgumentParser(prog="pgrad train --resume", add_help=False)
    parser.add_argument("--resume", required=True)
    parser.add_argument("--total-steps", type=int, default=None)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_args(argv)
    except SystemExit:
        raise UsageError(usage) from None
    if args.total_steps is not None and args.total_steps < 1:
        raise UsageError(f"--total-steps {args.total_steps} is invalid: must be an integer >= 1")
    return args.resume, None, args.total_steps


ENV_FLAGS_HELP = """environment flags (besides --env ID | module:EnvId | module:Factory):
  --env-kwargs K=V [K=V ...]   keyword arguments of the env (typed: 1, 0.5, True, [1, 2], text; or one JSON object)
  --wrapper module:Name[:K=V,...]   a wrapper applied to each sub-env, in the order given (repeatable)
  --no-check-env               skip gymnasium's env checker on a user's env
config flags (besides the fields above):
  --preset auto|none           the (algo, env) preset, or the plain defaults
  --seeds 0-15 | 0,1,2         train these seeds in one process, networks stacked (ppo, a2c, actor_critic, trpo, npg, sac, td3, ddpg); runs RUN_DIR/seed-S
  --zoo-file hyperparams.yml   an RL Zoo file's entry for --env in place of the preset"""


def _env_flags(argv: list[str]) -> tuple[list[str], dict, list, bool]:
    """Take ``--env-kwargs K=V ...``, ``--wrapper module:Name[:K=V,...]`` (repeatable) and
    ``--no-check-env`` out of ``argv``; the rest goes to the config's parser."""
    from pgrad.envspec import parse_kwargs, parse_wrapper

    rest, kwargs, wrappers, check_env = [], {}, [], True
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--env-kwargs" or token.startswith("--env-kwargs="):
            items = [token.split("=", 1)[1]] if "=" in token and token.startswith("--env-kwargs=") else []
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                items.append(argv[i])
                i += 1
            if not items:
                raise UsageError("--env-kwargs needs KEY=VALUE items (or one JSON object)")
            kwargs |= parse_kwargs(items)
            continue
        if token == "--wrapper" or token.startswith("--wrapper="):
            value = (
                token.split("=", 1)[1] if token.startswith("--wrapper=") else (argv[i + 1] if i + 1 < len(argv) else "")
            )
            if not value:
                raise UsageError("--wrapper needs module:Name[:KEY=VALUE,...]")
            wrappers.append(parse_wrapper(value))
            i += 1 if token.startswith("--wrapper=") else 2
            continue
        if token == "--no-check-env":
            check_env = False
        else:
            rest.append(token)
        i += 1
    return rest, kwargs, wrappers, check_env


def _training(start) -> int:
    """Run a training call; 130 after an interrupt (checkpoint written), 1 on a non-finite value."""
    from pgrad.algos.base import NonFiniteError
    from pgrad.train import Interrupted

    try:
        start()
    except Interrupted as e:
        print(f"pgrad train: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("pgrad train: interrupted twice; stopped without a new checkpoint", file=sys.stderr)
        return 130
    except NonFiniteError as e:
        print(f"pgrad train: error: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pgrad eval", description="Evaluate a saved agent.")
    parser.add_argument("run_dir", help="run directory (or any directory with a saved agent)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="episode seeds seed + 10^6 + i (default: the run's seed, as its evaluations)",
    )
    parser.add_argument(
        "--env",
        default=None,
        help="evaluate on this env (an id, module:EnvId or module:Factory) instead of the recorded one",
    )
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    parser.add_argument("--video", default=None, help="write the episodes' frames to this .mp4 or .gif")
    parser.add_argument("--best", action="store_true", help="the run's best model (best evaluation during training)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.markup import escape

    from pgrad.agent import load
    from pgrad.evaluation import check_video_path, evaluate

    if args.episodes < 1:
        raise UsageError(f"--episodes {args.episodes} is invalid: must be >= 1")
    if args.seed is not None and not 0 <= args.seed < 2**31:
        raise UsageError(f"--seed {args.seed} is invalid: must be an integer in [0, 2^31)")
    if args.video:
        check_video_path(args.video)  # before loading or running anything
    agent = load(args.run_dir, device=args.device, best=args.best)
    import torch

    torch.set_num_threads(agent.config.get("torch_threads", 1))  # as in training: its evaluations reproduce
    seed = args.seed if args.seed is not None else agent.config.get("seed", 0)
    result = evaluate(agent, args.episodes, seed, args.env, deterministic=not args.stochastic, video=args.video)
    mode = "stochastic" if args.stochastic else "deterministic"
    video = f"; video in {args.video}" if args.video else ""
    which = " (best model)" if args.best else ""
    summary = f"{agent.algo}{which} on {args.env or agent.env_id}: mean return {result.mean:.2f} ± {result.std:.2f} "
    Console().print(escape(summary + f"over {args.episodes} {mode} episodes{video}"))  # paths are text, not markup
    print(json.dumps(result.to_json()))
    return 0


def cmd_export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pgrad export",
        description="Write a saved agent's deterministic policy, its observation normalisation and action map "
        "included, as one ONNX or TorchScript file: input obs [batch, *obs shape], output action.",
    )
    parser.add_argument("run_dir", help="run directory (or any directory with a saved agent)")
    parser.add_argument("-o", "--output", required=True, help="policy.onnx, or policy.pt for TorchScript")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default=None, help="default: from the suffix")
    parser.add_argument("--best", action="store_true", help="the run's best model instead of the final one")
    args = parser.parse_args(argv)
    from pgrad.agent import load
    from pgrad.export import export

    agent = load(args.run_dir, best=args.best)
    path = export(agent, args.output, args.format)
    print(f"wrote {path}: {agent.algo}'s deterministic policy for {agent.env_id} (input 'obs', output 'action')")
    return 0


def cmd_plot(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pgrad plot", description="Plot learning curves of run directories.")
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("-o", "--output", default="curves.png")
    parser.add_argument("--metric", default="charts/episodic_return")
    args = parser.parse_args(argv)
    from pgrad.plotting import plot_runs

    runs = []
    for run in args.run_dirs:
        if (Path(run) / "sweep.json").is_file():  # a sweep: its trials, seeds grouped into mean ± std
            trials = json.loads((Path(run) / "sweep.json").read_text())["trials"]
            runs += [t["run_dir"] for t in trials if (Path(t["run_dir"]) / "progress.csv").is_file()]
        elif (Path(run) / "seeds.json").is_file():  # many seeds trained as one (--seeds): mean ± std
            try:
                listed = [str(r) for r in json.loads((Path(run) / "seeds.json").read_text())["runs"]]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
                raise UsageError(f"{Path(run) / 'seeds.json'} is unreadable ({type(e).__name__}: {e})") from None
            runs += [str(Path(run) / r) for r in listed if (Path(run) / r / "progress.csv").is_file()]
        elif (Path(run) / "progress.csv").is_file():
            runs.append(run)
        else:
            raise UsageError(
                f"{run!r} is not a pgrad run, --seeds or sweep directory (no progress.csv, seeds.json or sweep.json)"
            )
    check_output(args.output)
    columns = {c for run in runs for c in metric_columns(Path(run))}
    if args.metric not in columns:
        raise UsageError(f"--metric {args.metric!r} is invalid: the runs log {', '.join(sorted(columns))}")
    print(plot_runs(runs, args.output, args.metric))
    return 0


def metric_columns(run: Path) -> list[str]:
    """What ``pgrad plot --metric`` can draw of a run: progress.csv's columns, and eval.csv's as ``eval/…``."""
    names = [c for c in csv_columns(run / "progress.csv") if c != "global_step"]
    if (run / "eval.csv").is_file():
        names += [f"eval/{c}" for c in csv_columns(run / "eval.csv")[1:3]]  # mean_return, std_return
    return names


def csv_columns(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def check_output(output: str) -> None:
    """A figure path in an existing, writable directory, with a format matplotlib writes."""
    parent = Path(output).resolve().parent
    if Path(output).suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise UsageError(f"-o {output!r} is invalid: end it in .png, .pdf, .svg or .jpg")
    if not parent.is_dir():
        raise UsageError(f"-o {output!r} is invalid: the directory {str(parent)!r} does not exist")


def cmd_list(argv: list[str]) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pgrad.algos import ALGORITHMS, OBSERVATIONS, OPTIONS, takes
    from pgrad.train import load_presets

    presets = load_presets()
    table = Table(title="pgrad algorithms")
    table.add_column("algorithm")
    table.add_column("update")
    table.add_column("actions")
    table.add_column("presets (env ids)")
    for name, entry in ALGORITHMS.items():
        table.add_row(
            name, escape(entry.summary), ", ".join(entry.actions), ", ".join(presets.get(name, {})) or "-"
        )  # fmt: skip  (E[...] is not markup)
    options = Table(title="options beyond the notes")
    options.add_column("flag")
    options.add_column("what it is")
    options.add_column("algorithms")
    for flag_, summary, fields in OPTIONS:
        options.add_row(flag_, summary, ", ".join(n for n, e in ALGORITHMS.items() if takes(e, fields)))
    console = Console()
    console.print(table)
    console.print(options)
    console.print(f"observations (every algorithm): {OBSERVATIONS}; `atari`: every Atari id (ALE/…, …NoFrameskip-v4)")
    return 0


def cmd_sweep(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pgrad sweep",
        description="Train every (grid point, seed) as a Ray task; one run directory per trial and a summary.",
    )
    parser.add_argument("algo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--total-steps", type=int, default=None)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2", help="a swept config field")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a fixed config field")
    parser.add_argument("--sweep-dir", default=None, help="default runs/sweep-<algo>-<env>-<time>")
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster (default: a local runtime)")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    from pgrad.distributed import parse_value, run_sweep

    def pairs(items: list[str], flag: str) -> dict[str, str]:
        out = {}
        for item in items:
            if "=" not in item:
                raise UsageError(f"{flag} {item!r} is invalid: write FIELD=VALUE")
            key, value = item.split("=", 1)
            out[key.strip().replace("-", "_")] = value
        return out

    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--seeds {args.seeds!r} is invalid: a comma-separated list of integers") from None
    grid = {k: [parse_value(v) for v in values.split(",")] for k, values in pairs(args.grid, "--grid").items()}
    fixed = {k: parse_value(v) for k, v in pairs(args.set, "--set").items()}
    if args.total_steps is not None:
        fixed["total_steps"] = args.total_steps
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep_dir = Path(args.sweep_dir or f"runs/sweep-{args.algo}-{args.env}-{stamp}")
    console = Console()
    n_trials = len(seeds) * math.prod(len(v) for v in grid.values())
    console.print(f"sweep: {n_trials} trials of {args.algo} on {args.env} -> {sweep_dir}")

    def done(trial: dict) -> None:
        result = trial.get("error") or f"eval {trial['eval_mean']:.1f} ± {trial['eval_std']:.1f}"
        console.print(f"  {Path(trial['run_dir']).name}: {result} ({trial['seconds']:.0f} s)")

    record = run_sweep(args.algo, args.env, seeds, grid, fixed, sweep_dir, args.ray_address, on_done=done)
    table = Table(title=f"sweep {args.algo} on {args.env} ({len(seeds)} seeds per point)")
    for column in ("parameters", "eval return mean ± std", "min", "failed"):
        table.add_column(column)
    for row in record["summary"]:
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items()) or "(preset)"
        score = "-" if row["mean"] is None else f"{row['mean']:.1f} ± {row['std']:.1f}"
        table.add_row(params, score, "-" if row["min"] is None else f"{row['min']:.1f}", str(row["failed"]))
    console.print(table)
    console.print(f"wrote {sweep_dir / 'sweep.json'}, {sweep_dir / 'summary.md'}; curves: pgrad plot {sweep_dir}")
    return 1 if any(row["failed"] for row in record["summary"]) else 0


def cmd_tune(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pgrad tune",
        description="Optuna search (TPE sampler, median pruner on the evaluations) over the algorithm's RL Zoo "
        "search space; writes best.toml (a presets.toml table), best.yml (an RL Zoo entry) and trials.csv.",
    )
    parser.add_argument("algo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--trials", type=int, default=20, help="the study's total (a resumed study runs the rest)")
    parser.add_argument("--total-steps", type=int, default=None, help="steps per trial (default: the preset's)")
    parser.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: a tenth)")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--storage", default=None, help="an Optuna storage, e.g. sqlite:///study.db (resumable)")
    parser.add_argument("--study-name", default=None, help="default ALGO-ENV")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed and every trial's")
    parser.add_argument("--workers", type=int, default=0, help="Ray tasks running trials in parallel (needs --storage)")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a fixed config field")
    parser.add_argument("--out", default=None, help="default runs/tune-<algo>-<env>-<time>")
    args = parser.parse_args(argv)
    from rich.console import Console

    from pgrad.algos import get_algo
    from pgrad.distributed import parse_value
    from pgrad.envspec import EnvSpec
    from pgrad.train import resolve_config
    from pgrad.tune import tune

    algo = get_algo(args.algo).name
    for name in ("trials", "eval_episodes"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(args, name)} is invalid: must be an integer >= 1")
    if args.workers < 0:
        raise UsageError(f"--workers {args.workers} is invalid: must be an integer >= 0")
    fixed = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r} is invalid: write FIELD=VALUE")
        fixed[key.strip().replace("-", "_")] = parse_value(value)
    spec = EnvSpec.from_user(args.env)
    base, _, _ = resolve_config(algo, spec.name, "auto", fixed, registered=spec.id is not None)
    total = args.total_steps or base.total_steps
    fixed |= {"total_steps": total, "seed": args.seed, "eval_episodes": args.eval_episodes,
              "eval_every": args.eval_every or max(total // 10, 1)}  # fmt: skip
    resolve_config(algo, spec.name, "auto", fixed, registered=spec.id is not None)  # each value checked here
    out = Path(args.out or f"runs/tune-{algo}-{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    console = Console()
    console.print(f"tune: {args.trials} trials of {algo} on {spec.name} ({total:,} steps each) -> {out}")
    best = tune(algo, args.env, args.trials, fixed, out, args.storage, args.study_name, args.seed, args.workers,
                args.ray_address)  # fmt: skip
    console.print(f"best: trial {best['number']} of {best['trials']}, final evaluation {best['value']:.2f}")
    for key, value in sorted(best["params"].items()):
        console.print(f"  {key} = {value}")
    console.print(f"wrote {out / 'best.toml'}, {out / 'best.yml'}, {out / 'trials.csv'}")
    return 0


def cmd_lab(argv: list[str]) -> int:
    from pgrad.lab.cli import main as lab_main

    return lab_main(argv)


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "export": cmd_export,
    "plot": cmd_plot,
    "list": cmd_list,
    "sweep": cmd_sweep,
    "tune": cmd_tune,
    "lab": cmd_lab,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"pgrad: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from pgrad.checkpoint import CheckpointError

    try:
        return COMMANDS[command](rest)
    except (UsageError, ValueError, FileExistsError, CheckpointError) as e:
        print(f"pgrad {command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only or unwritable: files already written stay whole (atomic writes)
        if e.errno not in DISK_ERRORS:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(
            f"pgrad {command}: error: cannot write{where}: {e.strerror or e}; files written before are intact "
            "(a run resumes from its last checkpoint with pgrad train --resume)",
            file=sys.stderr,
        )
        return 2


DISK_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM, errno.EFBIG}


if __name__ == "__main__":
    sys.exit(main())

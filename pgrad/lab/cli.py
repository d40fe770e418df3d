"""``pgrad lab variance`` and ``pgrad lab theory``: the estimator study and the exact checks, as
commands that print a table and write JSON and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

USAGE = """usage: pgrad lab {variance,theory} [options]

  variance   bias and variance of every policy-gradient estimator against the exact gradient
             e.g. pgrad lab variance --mdp chain --horizons 5,10,20,40 --samples 2000 --seed 0
  theory     the notes' exact claims checked on a tabular MDP
             e.g. pgrad lab theory --mdp random --seed 0
"""


class LabUsageError(ValueError):
    pass


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a pipe or a file: do not squeeze the tables into 80 columns
        console = Console(width=160)
    return console


def cmd_variance(argv: list[str]) -> int:
    from rich.progress import Progress
    from rich.table import Table

    from pgrad.lab.mdps import MDPS
    from pgrad.lab.study import StudyConfig, run_study, write_study

    d = StudyConfig()
    p = argparse.ArgumentParser(prog="pgrad lab variance", description="Bias and variance of every estimator.")
    p.add_argument("--mdp", default=d.mdp, help=f"one of {', '.join(MDPS)}")
    p.add_argument("--horizons", type=_ints, default=d.horizons, help="comma-separated horizons T")
    p.add_argument("--samples", type=int, default=d.samples, help="trajectories m per estimate")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--gamma", type=float, default=d.gamma, help="the objective's discount")
    p.add_argument("--discount", type=float, default=d.discount, help="γ' of the 'discounted' estimators")
    p.add_argument("--lambdas", type=_floats, default=d.lambdas, help="GAE λ values")
    p.add_argument("--n-steps", type=_ints, default=d.n_steps, help="n of the n-step estimators")
    p.add_argument("--out", default=None, help="output directory (default runs/lab-variance-<mdp>-<seed>)")
    args = p.parse_args(argv)
    cfg = StudyConfig(
        mdp=args.mdp, horizons=args.horizons, samples=args.samples, seed=args.seed, gamma=args.gamma,
        discount=args.discount, lambdas=args.lambdas, n_steps=args.n_steps,
    )  # fmt: skip
    out = Path(args.out or f"runs/lab-variance-{cfg.mdp}-{cfg.seed}")
    console = _console()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"sampling {cfg.samples} trajectories per horizon", total=len(cfg.horizons))
        result = run_study(cfg, progress=lambda T: bar.advance(task))
    horizons = sorted(cfg.horizons)
    T = horizons[-1]
    table = Table(
        title=f"Policy-gradient estimators on {cfg.mdp} (γ = {cfg.gamma:g}, m = {cfg.samples}, seed {cfg.seed})"
    )
    table.add_column("estimator", no_wrap=True)
    table.add_column(f"bias, T={T} [{cfg.confidence:.0%} CI]", justify="right", no_wrap=True)
    table.add_column("noise floor", justify="right")
    table.add_column("in CI", justify="center")
    for h in horizons:
        table.add_column(f"var T={h}", justify="right")
    table.add_column("var slope vs T", justify="right")
    table.add_column("MSE slope vs m", justify="right")
    for res in result.estimators:
        last = res.per_horizon[-1]
        fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        table.add_row(
            res.name,
            f"{last.bias:.3f} [{last.bias_ci[0]:.3f}, {last.bias_ci[1]:.3f}]",
            f"{last.noise_floor:.3f}",
            "yes" if last.within_ci else "[red]no[/red]",
            *(f"{s.variance:.3g}" for s in res.per_horizon),
            fmt(res.variance_slope_T),
            fmt(res.mse_slope_m),
        )
    console.print(table)
    console.print("‖∇J‖ by horizon: " + ", ".join(f"T={h}: {n:.3f}" for h, n in result.exact_gradient_norm.items()))
    for path in write_study(result, out):
        console.print(f"wrote {path}")
    return 0


def cmd_theory(argv: list[str]) -> int:
    from rich.table import Table

    from pgrad.lab.mdps import MDPS
    from pgrad.lab.theory import TheoryConfig, run_theory, write_theory

    d = TheoryConfig()
    p = argparse.ArgumentParser(prog="pgrad lab theory", description="The notes' exact claims on a tabular MDP.")
    p.add_argument("--mdp", default=d.mdp, help=f"one of {', '.join(MDPS)}")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--horizon", type=int, default=d.horizon, help="horizon of the finite-horizon checks")
    p.add_argument("--gamma", type=float, default=d.gamma, help="discount, in (0, 1)")
    p.add_argument("--alpha", type=float, default=d.alpha, help="soft policy iteration's temperature")
    p.add_argument("--out", default=None, help="output directory (default runs/lab-theory-<mdp>-<seed>)")
    args = p.parse_args(argv)
    cfg = TheoryConfig(mdp=args.mdp, seed=args.seed, horizon=args.horizon, gamma=args.gamma, alpha=args.alpha)
    claims = run_theory(cfg)
    table = Table(title=f"The notes' claims on {cfg.mdp} (seed {cfg.seed}, T = {cfg.horizon}, γ = {cfg.gamma:g})")
    table.add_column("claim")
    table.add_column("holds", justify="center")
    table.add_column("measured")
    for c in claims:
        table.add_row(f"{c.name}\n[dim]{c.statement}[/dim]", "yes" if c.holds else "[red]NO[/red]", c.headline())
    console = _console()
    console.print(table)
    for path in write_theory(cfg, claims, Path(args.out or f"runs/lab-theory-{cfg.mdp}-{cfg.seed}")):
        console.print(f"wrote {path}")
    return 0 if all(c.holds for c in claims) else 1


SUBCOMMANDS = {"variance": cmd_variance, "theory": cmd_theory}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in SUBCOMMANDS:
        raise LabUsageError(f"unknown lab command {argv[0]!r}; choose one of: {', '.join(SUBCOMMANDS)}")
    return SUBCOMMANDS[argv[0]](argv[1:])

"""``pgrad lab variance`` and ``pgrad lab theory``: the estimator study and the exact checks, as
commands that print a table and write JSON and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

USAGE = """usage: pgrad lab {variance,theory,probe} [options]

  variance   bias and variance of every policy-gradient estimator against the exact gradient
             e.g. pgrad lab variance --mdp chain --horizons 5,10,20,40 --samples 2000 --seed 0
  theory     the notes' exact claims checked on a tabular MDP
             e.g. pgrad lab theory --mdp random --seed 0
  probe      gradient quality of a deep policy on a real task (Ilyas et al. 2020): every estimator's
             cosine with ∇J, variance and bias by batch size, and the learned V against Monte Carlo
             e.g. pgrad lab probe ppo --env CartPole-v1 --at 0,20000,50000
                  pgrad lab probe --run runs/ppo-CartPole-v1-0
"""


class LabUsageError(ValueError):
    pass


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (pgrad's ``error: ...``, exit 2), not a usage block."""

    def error(self, message: str):
        raise LabUsageError(f"{message} (see {self.prog} --help)")


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
    p = Parser(prog="pgrad lab variance", description="Bias and variance of every estimator.")
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
    p = Parser(prog="pgrad lab theory", description="The notes' exact claims on a tabular MDP.")
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


def cmd_probe(argv: list[str]) -> int:
    from rich.table import Table

    import pgrad
    from pgrad.algos import get_algo
    from pgrad.lab.probe import (
        PROBED_ALGOS,
        ProbeConfig,
        ProbeDuringTraining,
        env_maker,
        probe,
        subject_of,
        write_probe,  # fmt: skip
    )

    d = ProbeConfig()
    p = Parser(prog="pgrad lab probe", description="Gradient quality of a deep policy.")
    p.add_argument("algo", nargs="?", default=None, help="an on-policy algorithm to train and probe (not with --run)")
    p.add_argument("--env", default=None, help="the env to train on (with ALGO)")
    p.add_argument("--at", type=_ints, default=(0, 50_000), help="env steps at which to probe the run being trained")
    p.add_argument("--preset", default="auto", choices=("auto", "none"), help="the algorithm's preset for the env")
    p.add_argument("--run", default=None, help="probe a saved run's agent instead of training one")
    p.add_argument("--best", action="store_true", help="with --run: its best model (best_model.safetensors)")
    p.add_argument("--batch-sizes", type=_ints, default=d.batch_sizes, help="state-action pairs per batch")
    p.add_argument("--estimates", type=int, default=d.estimates, help="independent batch estimates per size")
    p.add_argument("--reference-steps", type=int, default=d.reference_steps, help="the reference sample's size")
    p.add_argument("--groups", type=int, default=d.groups, help="batch means for the reference's standard error")
    p.add_argument("--lambdas", type=_floats, default=d.lambdas, help="GAE λ values")
    p.add_argument("--n-steps", type=_ints, default=d.n_steps, help="n of the n-step estimators")
    p.add_argument("--value-states", type=int, default=d.value_states, help="states of the value check (0: none)")
    p.add_argument("--value-rollouts", type=int, default=d.value_rollouts, help="Monte Carlo rollouts per state")
    p.add_argument("--n-envs", type=int, default=d.n_envs, help="vector envs that sample the episodes")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=None, help="output directory (default runs/lab-probe-<algo>-<env>-<seed>)")
    args = p.parse_args(argv)
    cfg = ProbeConfig(
        batch_sizes=args.batch_sizes, estimates=args.estimates, reference_steps=args.reference_steps,
        groups=args.groups, lambdas=args.lambdas, n_steps=args.n_steps, value_states=args.value_states,
        value_rollouts=args.value_rollouts, n_envs=args.n_envs, seed=args.seed,
    )  # fmt: skip
    console = _console()
    say = lambda text: console.print(f"[dim]{text}[/dim]")  # noqa: E731
    if args.run is not None:
        if args.algo is not None or args.env is not None:
            raise LabUsageError("give either --run RUN or ALGO --env ENV, not both")
        agent = pgrad.load(args.run, best=args.best)
        out = Path(args.out or f"{args.run}/lab")
        results = [probe(subject_of(agent), env_maker(agent), cfg, say)]
        meta = {"env": agent.env_id, "algo": agent.algo, "run": str(args.run), "best": args.best}
    else:
        if args.algo is None or args.env is None:
            raise LabUsageError("give ALGO --env ENV to train and probe a run, or --run RUN to probe a saved one")
        if args.best:
            raise LabUsageError("--best is for --run")
        at = sorted(set(args.at))
        if not at or at[0] < 0 or at[-1] < 1:
            raise LabUsageError(
                f"--at {','.join(map(str, args.at))} is invalid: steps >= 0, the last >= 1 (trained to)"
            )
        out = Path(args.out or f"runs/lab-probe-{args.algo}-{args.env}-{args.seed}")
        name = get_algo(args.algo).name  # an unknown name: one line listing the algorithms
        if name not in PROBED_ALGOS:
            raise LabUsageError(f"ALGO {args.algo!r} is invalid: the probe trains one of {', '.join(PROBED_ALGOS)}")
        callback = ProbeDuringTraining(at, cfg, say)
        pgrad.train(args.algo, env=args.env, total_steps=at[-1], seed=args.seed, preset=args.preset,
                    run_dir=str(out / "run"), overwrite=True, callbacks=[callback], verbose=1)  # fmt: skip
        results = callback.results
        meta = {"env": args.env, "algo": args.algo, "run": str(out / "run"), "at": at}
    meta |= {"config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}
    for res in results:
        console.print(probe_table(res, meta, Table))
        if res.value is not None:
            v = res.value
            console.print(
                f"learned V vs Monte Carlo at {v.states} visited states ({v.rollouts} rollouts each): mean relative "
                f"error {v.mean_relative_error:.2f} (median {v.median_relative_error:.2f}); mean V_MC {v.mean_value:.2f}, "
                f"mean V̂ {v.mean_learned_value:.2f}; E[(G − V̂)²] {v.advantage_ms_learned:.4g} vs "
                f"E[(G − V_MC)²] {v.advantage_ms_true:.4g}"
            )  # fmt: skip
        else:
            console.print("value check: skipped (the env's state cannot be copied, or --value-states 0)")
    for path in write_probe(results, meta, out):
        console.print(f"wrote {path}")
    return 0


def probe_table(res, meta: dict, table_class):
    ref = res.reference
    label = "a fresh policy" if not res.step else f"step {res.step:,}"
    table = table_class(
        title=f"{meta['algo']} on {meta['env']}, {label}: J ≈ {ref['mean_discounted_return']:.2f} (γ = {res.gamma:g}; "
        f"undiscounted return {ref['mean_return']:.1f}, episodes of {res.mean_episode_length:.0f} steps); "
        f"‖∇J‖ = {ref['norm']:.4g} ± {ref['se_norm']:.2g} (reference: {ref['steps']:,} pairs; its cosine with the true "
        f"∇J ≈ {ref['cos_with_truth']:.2f}: its own noise shrinks every cosine below by about that factor)"
    )
    table.add_column("estimator", no_wrap=True)
    table.add_column("unbiased", justify="center")
    sizes = res.estimators[0].sizes
    for s in sizes:
        table.add_column(f"cos ∇J / pairwise\nM={s.batch_size} ({s.episodes} ep)", justify="right")
    table.add_column(f"tr Cov\nM={sizes[-1].batch_size}", justify="right")
    table.add_column(f"bias\n(noise {sizes[-1].batch_size})", justify="right")
    for est in res.estimators:
        last = est.sizes[-1]
        table.add_row(
            est.name,
            "yes" if est.unbiased_by_theory else "no",
            *(f"{s.cos:.2f}±{s.cos_se:.2f} / {s.pairwise_cos:.2f}" for s in est.sizes),
            "-" if last.variance is None else f"{last.variance:.3g}",
            "-" if last.bias is None else f"{last.bias:.3g} ({last.noise:.2g})",
        )
    return table


SUBCOMMANDS = {"variance": cmd_variance, "theory": cmd_theory, "probe": cmd_probe}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in SUBCOMMANDS:
        raise LabUsageError(f"unknown lab command {argv[0]!r}; choose one of: {', '.join(SUBCOMMANDS)}")
    return SUBCOMMANDS[argv[0]](argv[1:])

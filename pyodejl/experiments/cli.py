"""Command line: ``python -m pyodejl run|report|track|plot|demo|tasks`` (also the ``pyodejl`` script).

Errors print one line, ``pyodejl <command>: error: <message>``, to stderr, and
exit with status 2 for usage and configuration problems (bad flags or
combinations, a run folder with another configuration or other package
versions, an unreadable run folder) and 1 for failures while running (an ODE
solve that fails, θ turning non-finite, an OS error). ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

__all__ = ["build_parser", "main"]


def _int_at_least(minimum, what):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1, "positive")
_nonneg_int = _int_at_least(0, "non-negative")


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return v


def _fraction(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {v}")
    return v


def _add_track_arguments(p: argparse.ArgumentParser):
    from pyodejl.derivatives.methods import FAST_METHODS, GRADIENT_METHODS, HESSIAN_METHODS
    from pyodejl.experiments.models import MODEL_KINDS
    from pyodejl.experiments.runs import OPTIMIZERS, RunConfig
    from pyodejl.experiments.tasks import TASKS
    from pyodejl.models.mlp import ACTIVATIONS
    from pyodejl.solving import SOLVERS

    d = RunConfig(task="", model="")
    g = p.add_argument_group("task")
    g.add_argument("--task", required=True, choices=list(TASKS),
                   help="; ".join(f"{k}: {v.description} [a sample is one {v.sample}]" for k, v in TASKS.items()))
    g.add_argument("--dim", type=_positive_int, default=None,
                   help="data dimension (nested-spheres: 2, 3 or 4; alpine02: 1-8; digits: 64, 196 or 784, "
                        "i.e. images of side 8, 14 or 28; default: the task's)")
    g.add_argument("--num-samples", type=_positive_int, default=None,
                   help="observations / trajectories / points to generate (default: the task's; see pyodejl tasks)")
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, choices=list(MODEL_KINDS),
                   help="node: Neural ODE; anode: augmented Neural ODE (zero-padded state); concat-node: Neural ODE "
                        "with t fed to every layer and a tanh output (seed 004's MNIST model); "
                        "mlp: feedforward baseline")
    g.add_argument("--width", type=_positive_int, default=d.width, help=f"hidden width (default {d.width})")
    g.add_argument("--depth", type=_positive_int, default=d.depth, help=f"hidden layers (default {d.depth})")
    g.add_argument("--activation", default=d.activation, choices=sorted(ACTIVATIONS),
                   help=f"hidden activation (default {d.activation})")
    g.add_argument("--augment-dim", type=_nonneg_int, default=None,
                   help="augmented dimensions, anode only (default 1)")
    g.add_argument("--time-dependent", action="store_true",
                   help="feed t to the vector field (node/anode; concat-node always does)")
    g.add_argument("--loss", default=None, choices=["mse", "abs", "logistic", "cross-entropy"],
                   help="trajectory tasks: mse|abs; nested-spheres: mse (on ±1 labels, Dupont et al.)|logistic; "
                        "alpine02: mse|abs (default mse); digits: cross-entropy (softmax, the default)")
    g.add_argument("--solver", default=d.solver, choices=sorted(k for k, v in SOLVERS.items() if v.adaptive),
                   help=f"adaptive ODE solver (default {d.solver})")
    g.add_argument("--rtol", type=_positive_float, default=d.rtol, help=f"solver rtol (default {d.rtol})")
    g.add_argument("--atol", type=_positive_float, default=d.atol, help=f"solver atol (default {d.atol})")
    g.add_argument("--max-steps", type=_positive_int, default=d.max_steps,
                   help=f"solver step limit (default {d.max_steps})")
    g.add_argument("--flow-time", type=_positive_float, default=d.flow_time,
                   help=f"integration time for point tasks (default {d.flow_time})")
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", default=d.optimizer, choices=list(OPTIMIZERS),
                   help="gd: full-batch gradient descent; sgd: minibatch SGD (needs --batch-size); "
                        "adam: Adam (full batch unless --batch-size)")
    g.add_argument("--batch-size", type=_positive_int, default=None,
                   help="samples per minibatch (sgd, adam); the last partial batch of each epoch is dropped")
    g.add_argument("--lr", type=_positive_float, default=d.lr, help=f"learning rate (default {d.lr})")
    g.add_argument("--steps", type=_nonneg_int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    g.add_argument("--grad-method", default=d.grad_method, choices=list(GRADIENT_METHODS),
                   help="gradient method of the engine (default discrete; the others are ODE adjoints)")
    g = p.add_argument_group("Hessian tracking")
    g.add_argument("--hessian-every", type=_positive_int, default=d.hessian_every,
                   help=f"track every N steps and at the last step (default {d.hessian_every})")
    g.add_argument("--hessian-fraction", type=_fraction, default=d.hessian_fraction,
                   help="fraction r of the samples, fixed from the seed, whose loss is tracked "
                        "(seed 002; default 1 = full batch)")
    g.add_argument("--hessian-method", default=d.hessian_method, choices=sorted({**HESSIAN_METHODS, **FAST_METHODS}),
                   help=f"Hessian method (default {d.hessian_method})")
    g.add_argument("--exact-max-params", type=_nonneg_int, default=d.exact_max_params,
                   help="full Hessian and spectrum when p <= this, else Lanczos + Hutch++ "
                        f"(default {d.exact_max_params})")
    g.add_argument("--lanczos-tol", type=_positive_float, default=d.lanczos_tol,
                   help=f"relative residual tolerance of Lanczos (default {d.lanczos_tol})")
    g.add_argument("--trace-matvecs", type=_positive_int, default=d.trace_matvecs,
                   help=f"Hessian-vector products of the Hutch++ trace (default {d.trace_matvecs})")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=_nonneg_int, default=d.seed,
                   help="seed of data, initialisation, minibatches and estimators (default 0)")
    g.add_argument("--out", required=True, type=Path,
                   help="run folder; rerunning the same command resumes it, a different configuration is refused")
    g.add_argument("--allow-version-change", action="store_true",
                   help="resume an unfinished run folder although it was computed under other versions of "
                        "pyodejl, JAX, jaxlib, Diffrax, Equinox, Optax or NumPy (or records none); "
                        "the old versions are kept in config.json's version_history")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g.add_argument("--plot", action="store_true", help="write the run's figures to OUT/figures when done")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyodejl",
        description="Second-order analysis of Neural ODE losses: train with Hessian tracking, plot, reproduce.")
    debug_help = "show the full traceback of an error instead of one line"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    t = sub.add_parser("track", help="train a model and track the Hessian of its loss",
                       description="Train a Neural ODE, augmented Neural ODE or MLP and record loss, gradient "
                                   "norm, the largest, second-largest and smallest Hessian eigenvalue and the "
                                   "trace every N steps (seed 000 §5-6, seed 002).")
    _add_track_arguments(t)
    p = sub.add_parser("plot", help="figures of one run, or an overlay of several",
                       description="Evolution of eigenvalues and trace, spectra at stages of training (exact runs), "
                                   "and for several runs an overlay.")
    p.add_argument("runs", nargs="+", type=Path, metavar="DIR",
                   help="run folders of pyodejl track (experiments of pyodejl run: pyodejl report DIR --figures)")
    p.add_argument("--out", type=Path, default=None,
                   help="figure folder (default: DIR/figures for one run, <common parent>/figures for several)")
    p.add_argument("--labels", nargs="+", default=None, help="legend labels, one per run")
    p.add_argument("--surface", action="store_true",
                   help="also plot the loss surface along the top two Hessian eigenvectors at the last step")
    dm = sub.add_parser("demo", help="the demo: method agreement, then NODE vs ANODE on 2-D nested spheres",
                        description="Runs the engine's method-agreement check (if available) and a Neural ODE and an "
                                    "augmented Neural ODE trained on 2-D nested spheres with Hessian tracking; writes "
                                    "runs, figures and summary.md to OUT.")
    dm.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    dm.add_argument("--steps", type=_positive_int, default=None, help="training steps (default: the demo's)")
    dm.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub.add_parser("tasks", help="list the tasks")
    r = sub.add_parser("run", help="run a declared experiment (resumable); --list names them",
                       description="Run a seed experiment into a folder: one run folder per row and seed. Rerunning "
                                   "the same command skips finished runs and resumes unfinished ones.")
    r.add_argument("name", nargs="?", metavar="NAME", help="the experiment (see --list)")
    r.add_argument("--list", action="store_true", help="print the experiments, one a line, name first")
    r.add_argument("--out", type=Path, default=None, help="experiment folder (default runs/NAME, or "
                                                          "runs/NAME-quick with --quick)")
    r.add_argument("--quick", action="store_true", help="the smoke-test settings: under a minute on 2 cores")
    r.add_argument("--seeds", nargs="+", type=_nonneg_int, default=None, help="seeds (default: the experiment's)")
    r.add_argument("--variants", nargs="+", default=None, metavar="ROW", help="rows to run (default: all)")
    r.add_argument("--allow-version-change", action="store_true",
                   help="resume unfinished runs computed under other package versions")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    rp = sub.add_parser("report", help="tables, verdicts and provenance of an experiment folder",
                        description="Mean ± std over seeds of every column, the verdict of every declared target, "
                                    "and the commands, commits, cores and load that produced the numbers.")
    rp.add_argument("path", type=Path, metavar="DIR",
                    help="an experiment folder (pyodejl run), a report saved with --json, or with --sync a "
                         "Markdown file")
    rp.add_argument("--figures", type=Path, default=None, metavar="OUT",
                    help="also write the figures of the experiment folder DIR to folder OUT")
    rp.add_argument("--sync", action="store_true",
                    help="re-render, in place, every '<!-- pyodejl report FILE -->' block of the Markdown file DIR "
                         "from the saved report FILE (relative to the current folder)")
    fmt = rp.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the report as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print the report as Markdown (the default)")
    for command in sub.choices.values():
        # also accepted after the command; SUPPRESS keeps a flag given before it
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


def _config_from_args(args):
    from pyodejl.experiments.runs import RunConfig

    return RunConfig(
        task=args.task, model=args.model, dim=args.dim, num_samples=args.num_samples, width=args.width,
        depth=args.depth, activation=args.activation, augment_dim=args.augment_dim,
        time_dependent=args.time_dependent, loss=args.loss, solver=args.solver, rtol=args.rtol,
        atol=args.atol, max_steps=args.max_steps, flow_time=args.flow_time, optimizer=args.optimizer,
        batch_size=args.batch_size, lr=args.lr, steps=args.steps, grad_method=args.grad_method,
        hessian_every=args.hessian_every, hessian_fraction=args.hessian_fraction,
        hessian_method=args.hessian_method, exact_max_params=args.exact_max_params,
        lanczos_tol=args.lanczos_tol, trace_matvecs=args.trace_matvecs, seed=args.seed)


class _UsageError(Exception):
    """A command-line problem found after parsing (exit status 2)."""


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None) -> int:
    """Entry point of ``python -m pyodejl`` and the ``pyodejl`` script.

    Returns:
        the exit status: 0 success, 1 a failure while running, 2 a usage or
        configuration error (argparse's own errors exit 2 through SystemExit).
    """
    from pyodejl.experiments.runs import ConfigMismatchError, RunFolderError
    from pyodejl.solving import SolveError

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return _run(parser, args)
    except Exception as exc:  # noqa: BLE001 - sorted below; anything else is a bug and keeps its traceback
        if args.debug:
            raise
        if isinstance(exc, (_UsageError, ConfigMismatchError, RunFolderError, FileExistsError)):
            status = 2
        elif isinstance(exc, (SolveError, FloatingPointError, OSError)):
            status = 1
        elif isinstance(exc, (ValueError, TypeError)):
            status = 2
        else:
            raise
        print(f"pyodejl {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        if args.debug:
            raise
        again = "; rerun the same command to resume" if args.command in ("track", "run") else ""
        print(f"pyodejl {args.command}: interrupted{again}", file=sys.stderr)
        return 130


def _run_experiment(args) -> int:
    from pyodejl.experiments.catalogue import experiment_names, get_experiment

    if args.list:
        for name in experiment_names():
            exp = get_experiment(name)
            print(f"{name}  {exp.title} ({exp.source})")
        return 0
    if args.name is None:
        raise _UsageError("name an experiment (pyodejl run --list shows them)")
    from pyodejl.experiments.engine import run_experiment

    get_experiment(args.name)  # an unknown name fails before any folder is made
    out = args.out if args.out is not None else Path("runs") / (args.name + ("-quick" if args.quick else ""))
    import shlex

    run_experiment(args.name, out, quick=args.quick, seeds=args.seeds, variants=args.variants,
                   progress=not args.no_progress, allow_version_change=args.allow_version_change,
                   command="pyodejl " + shlex.join(args.argv))
    print(f"{out}: done; pyodejl report {out} gives the tables")
    return 0


def _report(args) -> int:
    import json

    from pyodejl.experiments.folder import read_json
    from pyodejl.experiments.report import build_report, render_markdown

    if args.sync:
        from pyodejl.experiments.folder import atomic_write_text
        from pyodejl.experiments.report import sync_markdown

        text = args.path.read_text(encoding="utf-8")
        synced = sync_markdown(text, Path.cwd())
        if synced != text:
            atomic_write_text(args.path, synced)
        print(f"{args.path}: {'updated' if synced != text else 'already current'}")
        return 0
    if args.path.is_file():
        report = read_json(args.path)
        if "rows" not in report or "provenance" not in report:
            raise _UsageError(f"{args.path} is not a report saved by pyodejl report --json")
    else:
        report = build_report(args.path)
        if args.figures is not None:
            from pyodejl.plotting.report import plot_experiment

            for path in plot_experiment(args.path, args.figures):
                print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(report, indent=1) if args.json else render_markdown(report), end="" if not args.json else "\n")
    return 0


def _run(parser, args) -> int:
    if args.command == "run":
        return _run_experiment(args)
    if args.command == "report":
        return _report(args)
    if args.command == "tasks":
        from pyodejl.experiments.tasks import TASKS

        for name, info in TASKS.items():
            print(f"{name:18s} sample={info.sample:11s} target={info.target:14s} dims={list(info.dims)} "
                  f"default n={info.default_num_samples}\n    {info.description}")
        return 0
    if args.command == "track":
        from pyodejl.experiments.tracking import track

        config = _config_from_args(args).resolved()
        run = track(config, args.out, progress=not args.no_progress,
                    allow_version_change=args.allow_version_change)
        last = run.records[-1]
        print(f"{run.path}: {len(run.records)} records; step {last['step']}: loss {last['loss']:.6g}, "
              f"eig_max {last['eig_max']:.6g}, eig_min {last['eig_min']:.6g}, trace {last['trace']:.6g} "
              f"({last['hessian']})")
        if args.plot:
            from pyodejl.plotting.training import plot_runs

            for f in plot_runs([run], args.out / "figures"):
                print(f"wrote {f}")
        return 0
    if args.command == "plot":
        from pyodejl.experiments.runs import Run
        from pyodejl.plotting.training import plot_runs

        runs = []
        for d in args.runs:
            try:
                runs.append(Run(d))
            except FileNotFoundError as exc:
                raise _UsageError(str(exc)) from exc
        for r in runs:
            if not r.records:
                raise _UsageError(f"run folder {r.path} has no records yet")
        if args.labels is not None and len(args.labels) != len(runs):
            raise _UsageError(f"--labels needs one label per run ({len(runs)}), got {len(args.labels)}")
        out = args.out
        if out is None:
            if len(runs) == 1:
                out = runs[0].path / "figures"
            else:
                import os

                out = Path(os.path.commonpath([str(r.path.resolve()) for r in runs])) / "figures"
        surfaces = None
        if args.surface:
            from pyodejl.experiments.surface import run_surface

            surfaces = [run_surface(r) for r in runs]
        for f in plot_runs(runs, out, labels=args.labels, surfaces=surfaces):
            print(f"wrote {f}")
        return 0
    if args.command == "demo":
        from pyodejl.experiments.demo import run_demo

        run_demo(args.out, steps=args.steps, progress=not args.no_progress)
        return 0
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2

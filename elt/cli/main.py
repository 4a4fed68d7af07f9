"""The `elt` command. Thin: each command parses, calls the library, prints. Errors are mapped to
messages and exit codes in one place (:func:`main`); a traceback only with ``--traceback``."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from elt.dispatch import QUIET_DASK
from elt.errors import EltError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="elt: active learning of machine-learned interatomic potentials (explore, label, train).")

_state = {"traceback": False}

@app.callback()
def _root(traceback: bool = typer.Option(False, "--traceback", help="Show Python tracebacks of errors."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more.")):
    _state["traceback"] = traceback
    _setup_logging(logging.DEBUG if verbose else logging.INFO)


def _setup_logging(level: int) -> None:
    from rich.logging import RichHandler

    root = logging.getLogger("elt")
    root.handlers.clear()
    root.addHandler(RichHandler(show_path=False, show_time=False, markup=False, rich_tracebacks=False))
    root.setLevel(level)
    root.propagate = False
    for noisy in ("distributed", "dask_jobqueue", "tornado", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # distributed sets up its own logging when it is first imported (after this), from dask's
    # config: say there that only errors are for the user (local worker processes inherit it too;
    # SLURM worker jobs drop it again, see elt.dispatch.slurm: their logs are files, not the terminal)
    if "DASK_LOGGING__DISTRIBUTED" not in os.environ:
        os.environ["DASK_LOGGING__DISTRIBUTED"] = "error"
        os.environ[QUIET_DASK] = "1"


def _console():
    from rich.console import Console

    return Console(stderr=False, highlight=False, soft_wrap=True)


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="Workflow files and/or cluster profiles to check."),
             cluster: Optional[str] = typer.Option(None, help="Cluster profile to check the workflows with instead of their own."),
             backend: bool = typer.Option(True, help="Also check that the labeling backend can run here.")):
    """Check workflow files (with their cluster profile and labeling backend) and cluster profiles
    without running anything. Prints "ok FILE" for each file that passed every check."""
    con = _console()
    worst = None
    for f in files:
        try:
            lines = _validate_one(f, cluster, backend)
        except EltError as e:  # said, and the next file is checked
            _print_error(e, _state["traceback"])
            worst = worst or e.exit_code
            continue
        con.print(f"[green]ok[/green] {lines[0]}")
        for line in lines[1:]:
            con.print("  " + line)
    if worst:
        raise typer.Exit(worst)


def _validate_one(path: Path, cluster: Optional[str], backend: bool) -> list[str]:
    """Every check of one file; what to print once all passed."""
    from elt.config import load_profile, load_workflow
    from elt.config.cluster import is_profile_file

    if is_profile_file(path):
        profile = load_profile(str(path))
        return [f"{path}: cluster profile (kind {profile.kind})"]
    wf = load_workflow(path)
    profile = load_profile(cluster or wf.cluster, wf.base_dir)
    lines = [f"{path}: {len(wf.explore.stages)} stage(s), label {wf.label.kind}, "
             f"ensemble of {wf.train.ensemble_size}, cluster {profile.kind}"]
    if backend:
        from elt.engine.loop import Campaign, run_dir_of

        lines += Campaign(wf, run_dir_of(wf), profile).plan_summary()  # the constructor runs the checks
    return lines


@app.command()
def run(workflow: Path = typer.Argument(..., help="workflow.yaml"),
        workdir: Optional[Path] = typer.Option(None, help="Run directory (default: the workflow's workdir, or NAME next to the file)."),
        cluster: Optional[str] = typer.Option(None, help="Cluster profile (name or path) instead of the workflow's."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Validate and list the planned tasks; run nothing."),
        from_run: Optional[Path] = typer.Option(None, help="Branch: start from the labeled data of another run directory ..."),
        from_iteration: Optional[int] = typer.Option(None, help="... up to (not including) this iteration."),
        json_out: bool = typer.Option(False, "--json", help="Print the final summary as JSON.")):
    """Run the active-learning loop, or resume it: finished tasks are reused, never redone."""
    from elt.config import load_profile, load_workflow
    from elt.engine.loop import Campaign, run_dir_of

    wf = load_workflow(workflow)
    profile = load_profile(cluster or wf.cluster, wf.base_dir)
    run_dir = run_dir_of(wf, workdir)
    con = _console()
    if from_run is not None or from_iteration is not None:
        from elt.engine.branch import branch_run

        branch_run(wf, Path(from_run) if from_run else None, from_iteration, run_dir)
        con.print(f"branched into {run_dir}")
    from elt.cli.progress import RichReporter

    with RichReporter(con) as reporter:
        camp = Campaign(wf, run_dir, profile, reporter)
        if dry_run:  # the constructor ran the checks
            for line in camp.plan_summary():
                con.print(line)
            con.print(f"cluster: {profile.kind} ({cluster or wf.cluster or 'local defaults'})")
            return
        con.print(f"run directory: {run_dir}")
        try:
            summary = camp.run()
        except KeyboardInterrupt:
            again = resume_command(workflow, workdir, cluster)
            con.print(f"\n[yellow]interrupted[/yellow]: finished tasks are kept in {run_dir}; "
                      f"run `{again}` to resume")
            raise typer.Exit(130)
    if json_out:
        print(json.dumps(summary.as_dict(), indent=1))
        return
    for line in summary_lines(summary):
        con.print(line)


def resume_command(workflow: Path, workdir: Optional[Path], cluster: Optional[str]) -> str:
    """The exact command that resumes this run (the same run directory and cluster)."""
    import shlex

    cmd = ["elt", "run", str(workflow)]
    if workdir is not None:
        cmd += ["--workdir", str(workdir)]
    if cluster is not None:
        cmd += ["--cluster", str(cluster)]
    return shlex.join(cmd)


def summary_lines(summary) -> list[str]:
    """The end of `elt run`: how it ended, the final errors and which data each is on, what next."""
    from elt.engine.plan import stop_text

    run = summary.run_dir
    out = [f"[bold]{stop_text(summary.status)}[/bold] after {summary.iterations} iteration(s); "
           f"{summary.dataset_size} labeled frames; run directory {run}"]
    for split, what in (("train", "its training frames"), ("valid", "validation frames held out of its training")):
        m = summary.final_metrics.get(split) or {}
        if m.get("rmse_f") is not None:
            out.append(f"final ensemble on {what}: force RMSE {m['rmse_f']:.4f} eV/Å"
                       + (f", energy RMSE {1000 * m['rmse_e']:.2f} meV/atom" if m.get("rmse_e") is not None else ""))
    t = summary.test or {}
    if "rmse_f" in t:
        out.append(f"final ensemble on {t['frames']} fresh MD frames at {t['temperature']:g} K (not in the data set): "
                   f"force RMSE {t['rmse_f']:.4f} eV/Å, energy RMSE {1000 * t['rmse_e']:.2f} meV/atom")
        if t.get("max_force_error_p90") is not None:
            promise = t.get("promised_max_force_error")
            out.append(f"  largest atomic force error per frame: median {t['max_force_error_median']:.3f}, "
                       f"90% below {t['max_force_error_p90']:.3f} eV/Å"
                       + (f" (the last trust level called frames accurate up to an expected {promise:.3f} eV/Å)"
                          if promise is not None else ""))
    elif t.get("error"):
        out.append(f"final test: {t['error']}")
    for w in summary.final_metrics.get("warnings") or []:
        out.append(f"[yellow]warning[/yellow] final training, {w}")
    out.append(f"final ensemble: {Path(run) / 'model'}  (load with elt.load_potential(PATH))")
    out.append(f"next: `elt report {run}` (tables and plots), `elt export {run} --format extxyz -o data.extxyz`")
    return out


@app.command()
def status(run_dir: Path = typer.Argument(..., help="Run directory")):
    """Where a run stands (works while it runs)."""
    from elt.reporting.status import status_text

    _console().print(status_text(run_dir))


try:  # optional command groups written by their own modules
    from elt.cli.cluster import cluster_app

    app.add_typer(cluster_app, name="cluster", help="Cluster profiles: print SLURM job scripts.")
except ImportError:  # pragma: no cover
    pass

# reports (elt/cli/report.py) and data in/out (elt/cli/data.py)
from elt.cli.data import export as _export, init as _init  # noqa: E402
from elt.cli.report import report as _report  # noqa: E402

app.command("report")(_report)
app.command("export")(_export)
app.command("init")(_init)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: run the typer app and map elt errors to messages and exit codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in argv or os.environ.get("ELT_TRACEBACK") == "1"
    try:
        rc = app(args=argv, prog_name="elt", standalone_mode=False)
        return rc if isinstance(rc, int) else 0
    except EltError as e:
        _print_error(e, show_tb)
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except typer.Exit as e:
        return e.exit_code
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except Exception as e:  # click usage errors and the rest
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # click's (or typer's vendored click's) usage errors
            e.show()
            return e.exit_code
        if type(e).__name__ == "Abort":
            return 130
        if show_tb:
            raise
        sys.stderr.write(f"internal error: {type(e).__name__}: {e}\n"
                         "  this is a bug in elt; rerun with --traceback and report it\n")
        return 70


def _print_error(e: EltError, show_traceback: bool) -> None:
    """How an elt error reaches the user: its message (what, received, what to write instead), and
    the traceback only when asked for."""
    if show_traceback:
        import traceback

        traceback.print_exception(e)
    sys.stderr.write(f"error: {e}\n")


def entry() -> None:
    sys.exit(main())

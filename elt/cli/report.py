"""`elt report RUN_DIR`: tables, plots, JSON and an HTML page of a run, from stored state only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from elt.data.layout import RunLayout
from elt.errors import ConfigError


def report(run_dir: Path = typer.Argument(..., help="Run directory (works while the run is in progress)."),
           json_out: bool = typer.Option(False, "--json", help="Print the report as JSON (nothing else) and write no files unless --plots/--html."),
           iteration: Optional[int] = typer.Option(None, "--iteration", "-i", help="One iteration in detail: walkers, failed labels, labeled frames."),
           out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the PNGs, aggregated model_devi files and HTML (default RUN_DIR/report)."),
           plots: Optional[bool] = typer.Option(None, "--plots/--no-plots", help="Write the PNG plots (default: yes, except with --json)."),
           html: bool = typer.Option(False, "--html", help="Also write one offline HTML page (tables and plots embedded): OUT/report.html.")):
    """Model-deviation report of a run: per-iteration table, plots, deviation vs true error."""
    from rich.console import Console

    from elt.reporting.collect import collect, iteration_row
    from elt.reporting.outputs import write_outputs
    from elt.reporting.tables import print_detail, print_summary

    rep = collect(run_dir)
    row = None
    if iteration is not None:
        row = iteration_row(rep, iteration)
        if row is None:
            known = [r["iteration"] for r in rep["iterations"]] + ([rep["current"]["iteration"]] if rep.get("current") else [])
            raise ConfigError(f"{run_dir} has no iteration {iteration} (finished or in progress)",
                              hint=f"iterations: {', '.join(map(str, known)) or 'none yet'}")
    write_files = (not json_out) if plots is None and not html else bool(plots) or html
    written = {}
    if write_files:
        written = write_outputs(rep, out or RunLayout(run_dir).report_dir, plots=plots is not False, html=html)
    if json_out:
        print(json.dumps(row if row is not None else rep, indent=1, allow_nan=False))
        return
    # piped output keeps whole lines: wide tables, paths never broken
    con = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
    if row is not None:
        print_detail(con, row)
    else:
        print_summary(con, rep)
    for kind, paths in written.items():
        for p in paths:
            con.print(f"{kind}: {p}", markup=False, soft_wrap=True)

"""`elt export` (a run's labeled data as extxyz or deepmd/npy) and `elt init` (starter workflows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def export(run_dir: Path = typer.Argument(..., help="Run directory."),
           fmt: str = typer.Option(..., "--format", "-f", help="extxyz (one file; ASE, MACE, NequIP) or deepmd-npy (a folder of systems; dpdata, DeePMD-kit)."),
           out: Path = typer.Option(..., "--out", "-o", help="Output file (extxyz) or folder (deepmd-npy)."),
           iteration: Optional[int] = typer.Option(None, "--iteration", "-i", help="Export the data labeled up to this iteration (inclusive), initial data included."),
           energy_key: str = typer.Option("energy", help="extxyz: info key of the energy (e.g. REF_energy for MACE)."),
           forces_key: str = typer.Option("forces", help="extxyz: array key of the forces (e.g. REF_forces)."),
           stress_key: str = typer.Option("stress", help="extxyz: info key of the stress (e.g. REF_stress)."),
           json_out: bool = typer.Option(False, "--json", help="Print a JSON summary.")):
    """Export the labeled data set of a run (eV, Å, eV/Å; deepmd/npy virials in eV)."""
    from elt.engine.dataset import export_run

    summary = export_run(run_dir, fmt, out, iteration, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key)
    if json_out:
        print(json.dumps(summary, indent=1))
        return
    typer.echo(f"{summary['frames']} labeled frames ({', '.join(summary['elements'])}) from "
               f"{len(summary['files'])} data file(s) -> {', '.join(summary['written'])}")


def init(template: str = typer.Argument(..., help="bulk-metal, water-box or small-molecule."),
         dest: Path = typer.Argument(..., help="Folder to write the starter files into."),
         force: bool = typer.Option(False, "--force", help="Overwrite files that exist.")):
    """Write a commented starter workflow (workflow.yaml) with local and SLURM cluster profiles."""
    from elt.data.templates import TEMPLATES, write_template

    files = write_template(template, dest, force)
    typer.echo(f"{template}: {TEMPLATES[template]}")
    for f in files:
        typer.echo(f"  wrote {f}")
    typer.echo(f"next: elt validate {dest / 'workflow.yaml'}   then   elt run {dest / 'workflow.yaml'}")

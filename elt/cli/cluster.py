"""`elt cluster ...`: inspect cluster profiles without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from elt.errors import ConfigError

cluster_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="Cluster profiles: print the SLURM job scripts they would submit.")


@cluster_app.command("script")
def script(profile: str = typer.Argument(..., help="Cluster profile: a path, or the name of a shipped profile (e.g. slurm)."),
           pool: Optional[str] = typer.Option(None, "--pool", help="Print only this pool's script."),
           run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (sets the log paths shown).")):
    """Print the job script(s) a SLURM profile would submit, one per pool. Nothing is submitted."""
    from elt.config.cluster import load_profile
    from elt.dispatch.slurm import job_scripts

    prof = load_profile(profile, Path.cwd())
    scripts = job_scripts(prof, run_dir)
    if pool is not None:
        if pool not in scripts:
            raise ConfigError(f"profile {profile!r} has no pool {pool!r}", hint=f"pools: {', '.join(scripts)}")
        typer.echo(scripts[pool], nl=False)
        return
    for i, (name, text) in enumerate(scripts.items()):
        kinds = ", ".join(prof.pools[name].kinds)
        typer.echo(("\n" if i else "") + f"# ===== pool {name} ({kinds}) =====")
        typer.echo(text, nl=False)

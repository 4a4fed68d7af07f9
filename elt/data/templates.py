"""`elt init`: starter workflows (package data in ``elt/templates/``) with a local and a SLURM
cluster profile, and the start structures a template needs (a generated water box)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from ase import Atoms

from elt.errors import ConfigError, SetupError

TEMPLATES = {
    "bulk-metal": "fcc copper, 32 atoms, EMT labels (runs on a laptop in minutes)",
    "water-box": "27 H2O in a periodic 9.3 Å box, CP2K labels",
    "small-molecule": "ethanol in vacuum, PySCF labels",
}
PROFILES = ("local.yaml", "slurm.yaml")  # the shipped cluster profiles (elt/cluster_profiles/), copied as they are
WATER_DENSITY = 1.0  # g/cm³


def template_text(name: str) -> str:
    return resources.files("elt").joinpath("templates", name).read_text(encoding="utf-8")


def water_box(n_side: int = 3, density: float = WATER_DENSITY, seed: int = 0, min_distance: float = 1.6) -> Atoms:
    """``n_side**3`` water molecules on a cubic grid, randomly oriented, in a periodic cube of the
    given density (g/cm³); no two atoms of different molecules closer than ``min_distance`` Å."""
    from ase.build import molecule
    from ase.units import _amu

    n = n_side ** 3
    h2o = molecule("H2O")
    mass_g = n * h2o.get_masses().sum() * _amu * 1e3
    edge = (mass_g / density * 1e24) ** (1.0 / 3.0)  # Å
    rng = np.random.default_rng(seed)
    for _ in range(200):
        box = Atoms(cell=[edge] * 3, pbc=True)
        for i, j, k in np.ndindex(n_side, n_side, n_side):
            m = h2o.copy()
            m.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
            m.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
            m.translate((np.array([i, j, k]) + 0.5) * edge / n_side - m.get_center_of_mass())
            box += m
        d = box.get_all_distances(mic=True)
        mol = np.repeat(np.arange(n), 3)
        d[mol[:, None] == mol[None, :]] = np.inf
        if d.min() >= min_distance:
            return box
    raise RuntimeError("could not place the water molecules apart")  # pragma: no cover


def write_template(name: str, dest: Path, force: bool = False) -> list[Path]:
    """Write the starter workflow ``name`` into ``dest`` as workflow.yaml, with local.yaml and
    slurm.yaml (cluster profiles) and the template's structure files. Returns the files written."""
    if name not in TEMPLATES:
        raise ConfigError(f"unknown template {name!r}",
                          hint="templates: " + "; ".join(f"{k} ({v})" for k, v in TEMPLATES.items()))
    dest = Path(dest)
    files = {"workflow.yaml": template_text(f"{name}.yaml")}
    for name_ in PROFILES:
        files[name_] = resources.files("elt").joinpath("cluster_profiles", name_).read_text(encoding="utf-8")
    extra = {}
    if name == "water-box":
        extra["water_box.extxyz"] = water_box()
    existing = [dest / f for f in list(files) + list(extra) if (dest / f).exists()]
    if existing and not force:
        raise SetupError(f"{dest} already holds {', '.join(p.name for p in existing)}",
                         hint="choose another folder, or pass --force to overwrite")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for fname, text in files.items():
            (dest / fname).write_text(text, encoding="utf-8")
            written.append(dest / fname)
        for fname, atoms in extra.items():
            from ase.io import write

            write(str(dest / fname), atoms, format="extxyz")
            written.append(dest / fname)
    except OSError as e:
        raise SetupError(f"cannot write the template into {dest}: {e}") from None
    return written

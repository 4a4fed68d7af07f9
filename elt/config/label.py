"""Labeling sections of workflow.yaml: which reference method produces energies and forces.

Only *what* is computed lives here (method, basis, cutoffs, SCF settings). *Where and how* (threads
per task, the CP2K command and MPI launcher) comes from the cluster profile, as
:class:`elt.labeling.base.ExecSettings`. This module imports neither pyscf nor anything that runs
CP2K, so that ``elt validate`` stays instant.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import Field, field_validator, model_validator

from elt.config.base import PluginConfig

# dispersion corrections PySCF offers (through the pyscf-dispersion package)
PYSCF_DISPERSION = ("d3bj", "d3zero", "d3bjm", "d3zerom", "d3op", "d4")


class LabelBase(PluginConfig):
    """Base of every label section (built-in or a plugin's): the failure policy the engine applies
    to any labeler. A labeler plugin's config model subclasses this with its own ``kind``."""

    max_failed_fraction: float = Field(
        0.5, ge=0.0, le=1.0,
        description="The campaign stops when more than this fraction of one iteration's labels fail.")
    retries: int = Field(
        2, ge=0, le=20,
        description="How often an infrastructure failure (killed, time limit, binary missing) is retried; "
                    "physics failures (SCF not converged) are not retried this way.")

    def with_base_dir(self, base_dir: Path) -> "LabelBase":
        """This section with its file paths made absolute (relative paths are relative to the workflow file)."""
        return self

    def input_files(self) -> list[Path]:
        """Files whose content is part of the method (an input template): their text enters the
        label task ids, so editing one labels again."""
        return []


class EMTLabel(LabelBase):
    """ASE's EMT potential as a cheap oracle (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O roughly): the
    ``ase`` labeler with ``calculator: ase.calculators.emt:EMT`` and no parameters."""

    kind: Literal["emt"] = Field("emt", description="ASE's effective medium theory: fast, for tests and demos.")


CALCULATOR_HINT = ("write calculator: 'package.module:Name' (a class or function that returns an ASE calculator), "
                   "e.g. 'ase.calculators.lj:LennardJones'")


def import_object(path: str) -> Callable:
    """The callable that ``"package.module:Name"`` (or ``"package.module.Name"``) names; a
    ValueError that says what is wrong (module missing, no such name) and what to write."""
    module, sep, name = path.strip().partition(":")
    if not sep:
        module, _, name = module.rpartition(".")
    if not module or not name:
        raise ValueError(f"{path!r} is not an import path; {CALCULATOR_HINT}")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ValueError(f"module {module!r} cannot be imported ({e}); install the package that provides it, "
                         f"or {CALCULATOR_HINT}") from None
    except Exception as e:  # the module exists but its import fails (a broken dependency)
        raise ValueError(f"importing module {module!r} failed: {type(e).__name__}: {e}") from None
    obj = mod
    for part in name.split("."):
        if not hasattr(obj, part):
            close = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=3)
            raise ValueError(f"module {module!r} has no {name!r}; "
                             + (f"write calculator: '{module}:{close[0]}'" if close and "." not in name
                                else CALCULATOR_HINT))
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{path!r} is a {type(obj).__name__}, not a class or function; {CALCULATOR_HINT}")
    return obj


class AseLabel(LabelBase):
    """Any ASE calculator, named by its import path and built with keyword arguments, one frame per
    task: xTB through tblite, ORCA, VASP, Quantum ESPRESSO, a machine-learned potential ... Energies
    in eV, forces in eV/Å, stress in eV/Å³ (ASE's units). Calculators that write files run in the
    frame's task folder (their ``directory``); the cluster profile's ``label_threads`` sets
    OMP_NUM_THREADS while the calculator runs (read by the programs it starts; a library already
    loaded in the worker keeps the threads it started with, unless threadpoolctl is installed)."""

    kind: Literal["ase"] = Field(description="An ASE calculator by import path.")
    calculator: str = Field(description="Import path of the calculator class (or of a function returning a "
                                        "calculator): 'package.module:Name', e.g. 'ase.calculators.lj:LennardJones' "
                                        "or 'tblite.ase:TBLite'.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the calculator, in "
                                       "its own units (e.g. {epsilon: 0.0104, sigma: 3.4} for LennardJones); not "
                                       "'directory': each frame runs in its own task folder.")
    energy: Literal["energy", "free_energy"] = Field(
        "energy", description="Which energy is the label: energy, or free_energy (the force-consistent energy of "
                              "smeared DFT, whose gradient the forces are).")
    stress: bool = Field(True, description="Label the stress of frames periodic in all three directions, where the "
                                           "calculator implements it.")

    @field_validator("calculator")
    @classmethod
    def _importable(cls, v):
        import_object(v)
        return v.strip()

    @field_validator("parameters")
    @classmethod
    def _no_directory(cls, v):
        if "directory" in v:
            raise ValueError("remove 'directory': elt runs each frame in its own task folder (label/TASK_ID/)")
        return v

    def factory(self) -> Callable:
        """The calculator class (or function) :attr:`calculator` names."""
        return import_object(self.calculator)


class PySCFLabel(LabelBase):
    """DFT (or HF) with PySCF. Molecules (frames with no periodic direction) are all-electron by
    default; periodic cells (all three directions periodic) use GTH pseudopotentials, at the gamma
    point (multigrid) or on a k-mesh. Energies in Hartree and gradients in Hartree/Bohr are
    converted to eV and eV/Å."""

    kind: Literal["pyscf"] = Field(description="PySCF: Gaussian basis DFT/HF.")
    method: Literal["rks", "uks", "rhf", "uhf"] = Field(
        "rks", description="Kohn-Sham (rks/uks) or Hartree-Fock (rhf/uhf); u* for open shells (spin > 0).")
    xc: str = Field("pbe", description="Exchange-correlation functional name known to PySCF's libxc (e.g. pbe, b3lyp); "
                                       "ignored for rhf/uhf.")
    basis: Optional[str] = Field(
        None, description="Basis set name known to PySCF. Default: def2-svp for molecules, gth-dzvp-molopt-sr "
                          "(CP2K's DZVP-MOLOPT-SR-GTH) for periodic cells.")
    pseudo: Optional[str] = Field(
        None, description="Pseudopotential. Default: none (all-electron) for molecules, gth-pbe for periodic cells "
                          "(use gth-blyp, gth-lda, ... to match another xc). Periodic cells need a GTH pseudopotential.")
    charge: int = Field(0, description="Total charge.")
    spin: int = Field(0, ge=0, description="2S, the number of unpaired electrons (PySCF's convention; multiplicity - 1).")
    dispersion: Optional[Literal["d3bj", "d3zero", "d3bjm", "d3zerom", "d3op", "d4"]] = Field(
        None, description="Dispersion correction added to energy and forces (molecules only; needs "
                          "`pip install pyscf-dispersion`); None for none.")
    grids_level: Optional[int] = Field(
        None, ge=0, le=9, description="Molecular DFT integration grid level (PySCF's grids.level, default 3).")
    conv_tol: float = Field(1e-9, gt=0, description="SCF energy convergence threshold (Hartree).")
    max_cycle: int = Field(100, ge=1, description="Maximum SCF iterations of the first try.")
    level_shift: float = Field(0.0, ge=0, description="Level shift (Hartree) of the first try.")
    damp: float = Field(0.0, ge=0, lt=1, description="Fock damping factor of the first try (0: none).")
    init_guess: Literal["minao", "atom", "huckel", "1e", "sap"] = Field(
        "minao", description="PySCF initial guess of the first try.")
    fallback: bool = Field(
        True, description="When the first try does not converge: retry from its density with a level shift and "
                          "damping, then with second-order SCF (Newton), before the frame is declared failed.")
    fallback_level_shift: float = Field(0.3, gt=0, description="Level shift (Hartree) of the level-shift fallback try.")
    fallback_max_cycle: int = Field(100, ge=1, description="Maximum SCF iterations of each fallback try.")
    kpts: Optional[list[int]] = Field(
        None, description="Monkhorst-Pack k-mesh for periodic cells, e.g. [2, 2, 2] (KRKS/KUKS/KRHF/KUHF). "
                          "None: gamma point only (RKS/UKS with multigrid; periodic HF then uses a 1x1x1 k-mesh).")
    ke_cutoff: Optional[float] = Field(
        None, gt=0, description="Plane-wave kinetic energy cutoff of periodic cells (Hartree; 1 Ha = 2 Ry); "
                                "None lets PySCF choose from the basis.")
    stress: bool = Field(
        True, description="Compute the stress of periodic cells (pure functionals; hybrids and HF give none).")

    @field_validator("kpts")
    @classmethod
    def _three(cls, v):
        if v is not None and (len(v) != 3 or any(k < 1 for k in v)):
            raise ValueError("kpts needs three positive integers, e.g. [2, 2, 2]")
        return v

    @field_validator("xc", "basis", "pseudo")
    @classmethod
    def _not_blank(cls, v):
        if v is not None and not v.strip():
            raise ValueError("must not be empty; leave the key out to use the default")
        return v.strip() if v is not None else v

    @model_validator(mode="after")
    def _spin_method(self):
        if self.spin > 0 and self.method in ("rks", "rhf"):
            raise ValueError(f"spin {self.spin} (open shell) needs an unrestricted method: "
                             f"method: {'uks' if self.method == 'rks' else 'uhf'}")
        return self


class CP2KLabel(LabelBase):
    """DFT with the cp2k.psmp binary (Quickstep, GPW), RUN_TYPE ENERGY_FORCE.

    Molecules (frames with no periodic direction) are put in an orthorhombic box, centred, and
    solved with an isolated Poisson solver (``poisson``); frames that carry a cell keep it as the
    box, so the grid stays the same from frame to frame. Periodic cells (all three directions)
    also get the analytical stress. The command and an MPI launcher come from the cluster profile.
    """

    kind: Literal["cp2k"] = Field(description="CP2K, Quickstep GPW.")
    template: Optional[Path] = Field(
        None, description="A CP2K input file you trust; elt replaces the cell, coordinates, RUN_TYPE and force/stress "
                          "printing, adds a &KIND from basis/potential for elements it lacks, and sets "
                          "CHARGE/MULTIPLICITY only when you give them here. The other short-form keys are then ignored.")
    xc: str = Field("PBE", description="XC_FUNCTIONAL section name (PBE, BLYP, PADE, ...).")
    basis: str = Field("DZVP-MOLOPT-SR-GTH", description="Basis set name as listed in the basis file, for every element.")
    potential: str = Field("GTH-PBE", description="Pseudopotential name as listed in the potential file (a family alias "
                                                  "such as GTH-PBE, or a full name such as GTH-PBE-q6).")
    basis_file: str = Field("BASIS_MOLOPT", description="Basis set file (a name in CP2K's data directory, or a path).")
    potential_file: str = Field("GTH_POTENTIALS", description="Pseudopotential file (a name in CP2K's data directory, or a path).")
    cutoff: float = Field(400.0, gt=0, description="Plane-wave cutoff of the finest grid (Ry).")
    rel_cutoff: float = Field(50.0, gt=0, description="Relative cutoff (Ry) that maps Gaussians to grids.")
    charge: int = Field(0, description="Total charge.")
    multiplicity: int = Field(1, ge=1, description="Spin multiplicity 2S+1; above 1 switches on unrestricted Kohn-Sham (UKS).")
    max_scf: int = Field(50, ge=1, description="Maximum SCF iterations.")
    eps_scf: float = Field(1e-6, gt=0, description="SCF convergence threshold.")
    poisson: Literal["wavelet", "mt", "periodic"] = Field(
        "wavelet", description="Molecules only: wavelet (isolated, any box), mt (Martyna-Tuckerman; box at least twice "
                               "the molecule's density) or periodic (the box is periodic; vacuum keeps images apart).")
    vacuum: float = Field(6.0, gt=0, description="Vacuum (Å) on each side of a molecule whose frame has no cell.")
    time_limit: Optional[float] = Field(
        None, gt=0, description="Seconds after which one CP2K run is killed (an infrastructure failure, retried); None: no limit.")

    def with_base_dir(self, base_dir: Path) -> "CP2KLabel":
        if self.template is None or Path(self.template).expanduser().is_absolute():
            return self
        return self.model_copy(update={"template": Path(base_dir) / Path(self.template).expanduser()})

    def input_files(self) -> list[Path]:
        return [Path(self.template)] if self.template is not None else []

    @field_validator("xc", "basis", "potential", "basis_file", "potential_file")
    @classmethod
    def _one_word(cls, v):
        v = v.strip()
        if not v or any(c.isspace() for c in v):
            raise ValueError("must be one word without spaces")
        return v


LabelConfig = EMTLabel | AseLabel | PySCFLabel | CP2KLabel

"""Labeling sections of workflow.yaml: which reference method produces energies and forces."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from elt.config.base import Strict


class _LabelCommon(Strict):
    max_failed_fraction: float = Field(
        0.5, ge=0.0, le=1.0,
        description="The campaign stops when more than this fraction of one iteration's labels fail.")
    retries: int = Field(
        2, ge=0, le=20,
        description="How often an infrastructure failure (killed, time limit, binary missing) is retried; "
                    "physics failures (SCF not converged) are not retried this way.")


class EMTLabel(_LabelCommon):
    """ASE's EMT potential as a cheap oracle (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O roughly)."""

    kind: Literal["emt"] = Field("emt", description="ASE's effective medium theory: fast, for tests and demos.")


class PySCFLabel(_LabelCommon):
    """DFT (or HF) with PySCF, molecules or periodic cells (gamma point or a k-mesh)."""

    kind: Literal["pyscf"] = Field(description="PySCF: Gaussian basis DFT/HF.")
    method: Literal["rks", "uks", "rhf", "uhf"] = Field("rks", description="Kohn-Sham (rks/uks) or Hartree-Fock (rhf/uhf).")
    xc: str = Field("pbe", description="Exchange-correlation functional name known to PySCF's libxc (e.g. pbe, b3lyp).")
    basis: str = Field("def2-svp", description="Basis set name known to PySCF (periodic cells: e.g. gth-dzvp).")
    pseudo: Optional[str] = Field(None, description="Pseudopotential for periodic cells (e.g. gth-pbe); None for all-electron molecules.")
    charge: int = Field(0, description="Total charge.")
    spin: int = Field(0, ge=0, description="2S, the number of unpaired electrons (PySCF's convention).")
    dispersion: Optional[str] = Field(None, description="Dispersion correction where PySCF offers it (e.g. d3bj); None for none.")
    conv_tol: float = Field(1e-9, gt=0, description="SCF energy convergence threshold (Hartree).")
    max_cycle: int = Field(100, ge=1, description="Maximum SCF iterations of the first try.")
    level_shift: float = Field(0.0, ge=0, description="Level shift (Hartree) of the first try.")
    init_guess: str = Field("minao", description="PySCF initial guess: minao, atom, huckel, ...")
    fallback: bool = Field(True, description="On non-convergence retry with level shift and second-order SCF before declaring the frame failed.")
    kpts: Optional[list[int]] = Field(None, description="k-mesh for periodic cells (KRKS); None means gamma point only.")
    ke_cutoff: Optional[float] = Field(None, gt=0, description="Plane-wave kinetic energy cutoff for periodic density fitting (Hartree); None lets PySCF choose.")
    threads: Optional[int] = Field(None, ge=1, description="Threads per label task; default from the cluster profile.")


class CP2KLabel(_LabelCommon):
    """DFT with the cp2k.psmp binary (Quickstep, GPW)."""

    kind: Literal["cp2k"] = Field(description="CP2K, Quickstep GPW.")
    template: Optional[Path] = Field(None, description="A CP2K input file you trust; elt replaces the cell, coordinates and RUN_TYPE. "
                                                       "When set, the short form below is ignored except charge/multiplicity.")
    xc: str = Field("PBE", description="XC functional section name (PBE, BLYP, ...).")
    basis: str = Field("DZVP-MOLOPT-SR-GTH", description="Basis set name in BASIS_MOLOPT.")
    potential: str = Field("GTH-PBE", description="Pseudopotential family name in GTH_POTENTIALS (element suffix -qN is added).")
    cutoff: float = Field(280.0, gt=0, description="Plane-wave cutoff (Ry).")
    rel_cutoff: float = Field(40.0, gt=0, description="Relative cutoff (Ry).")
    charge: int = Field(0, description="Total charge.")
    multiplicity: int = Field(1, ge=1, description="Spin multiplicity 2S+1.")
    max_scf: int = Field(50, ge=1, description="Maximum SCF iterations.")
    eps_scf: float = Field(1e-6, gt=0, description="SCF convergence threshold.")
    vacuum: float = Field(6.0, ge=0, description="Vacuum (Å) around a non-periodic molecule to build its box.")
    threads: Optional[int] = Field(None, ge=1, description="OMP_NUM_THREADS per label task; default from the cluster profile (1).")

    @model_validator(mode="after")
    def _template_exists(self):
        return self


LabelConfig = EMTLabel | PySCFLabel | CP2KLabel

"""PySCF as a labeler: Gaussian-basis DFT/HF for molecules and periodic cells.

- Molecules (no periodic direction): RKS/UKS/RHF/UHF, all-electron by default (def2-svp), optional
  dispersion (pyscf-dispersion); energy and analytic gradients.
- Periodic cells (all three directions): GTH pseudopotentials (gth-pbe, gth-dzvp-molopt-sr by
  default). Gamma point: RKS/UKS with ``multigrid_numint()`` (PySCF's analytic gamma-point
  gradients need it); the stress is evaluated by PySCF's FFTDF stress code on the converged
  orbitals. A k-mesh (``kpts``): KRKS/KUKS/KRHF/KUHF with FFTDF gradients and (KS) stress.
  Periodic HF without ``kpts`` runs on a 1x1x1 k-mesh (the gamma point), since gamma-point HF
  has no analytic gradients in PySCF. Hybrids and HF give no stress (``Labels.stress`` None and
  ``info['stress']`` says why).

``mf.converged`` is PySCF's only sign of SCF failure (it never raises). On non-convergence the
labeler retries from the last density with a level shift, then with second-order SCF (Newton);
if none converges the frame is a physics failure with reason ``scf_not_converged``. Each try is
recorded in ``Labels.info['scf_tries']``. PySCF's log of the task is ``WORKDIR/pyscf.log``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
from ase import Atoms

from elt.data.frames import voigt
from elt.errors import CalculationError
from elt.labeling._geometry import check_distances, is_periodic
from elt.labeling.base import Labeler, Labels
from elt.registry import register
from elt.units import HARTREE_PER_BOHR3_TO_EV_PER_ANGSTROM3, hartree_per_bohr_to_ev_per_angstrom, hartree_to_ev

log = logging.getLogger(__name__)

MOLECULE_BASIS = "def2-svp"
CELL_BASIS = "gth-dzvp-molopt-sr"
CELL_PSEUDO = "gth-pbe"
INSTALL_HINT = "install PySCF on the workers: pip install 'elt[dft]' (or pip install pyscf)"


def _import_pyscf():
    try:
        import pyscf  # noqa: F401
        from pyscf import lib
    except ImportError as e:
        raise CalculationError(f"PySCF cannot be imported: {e}", reason="pyscf_missing", physics=False,
                               hint=INSTALL_HINT) from None
    return lib


@contextlib.contextmanager
def _num_threads(n: int):
    from pyscf import lib

    old = lib.num_threads()
    lib.num_threads(max(1, int(n)))
    try:
        yield
    finally:
        lib.num_threads(old)


@register("labeler", "pyscf")
class PySCFLabeler(Labeler):
    """Labels from PySCF (config: :class:`elt.config.label.PySCFLabel`; threads from the profile)."""

    # ------------------------------------------------------------------ public
    def compute(self, atoms: Atoms, workdir: Path) -> Labels:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        periodic = is_periodic(atoms)
        check_distances(atoms, periodic)
        _import_pyscf()
        t0 = time.perf_counter()
        with _num_threads(self.exec.threads):
            system = self._build(atoms, periodic, workdir)
            try:
                return self._label(system, atoms, periodic, workdir, t0)
            except CalculationError:
                raise
            except NotImplementedError as e:
                raise CalculationError(f"PySCF does not implement this combination: {e}", reason="unsupported",
                                       physics=True, workdir=str(workdir),
                                       hint="change method/xc/kpts; see the pyscf labeler's documentation") from None
            except MemoryError:
                raise CalculationError("PySCF ran out of memory", reason="out_of_memory", physics=False,
                                       workdir=str(workdir), hint="give label tasks more memory") from None
            except Exception as e:  # unexpected library error: infrastructure, retried by the engine
                raise CalculationError(f"PySCF failed: {type(e).__name__}: {e} (log: {workdir / 'pyscf.log'})",
                                       reason="pyscf_error", physics=False, workdir=str(workdir)) from None
            finally:
                out = getattr(system, "stdout", None)
                if out is not None and out is not sys.stdout and not out.closed:
                    out.close()

    def check(self, elements: list[str], periodic: Optional[bool] = None) -> list[str]:
        """Problems that would make every label fail. ``periodic`` (if known) also checks the
        default basis/pseudopotential of that kind of system."""
        cfg = self.config
        try:
            import pyscf  # noqa: F401
        except ImportError:
            return [f"PySCF is not importable here; {INSTALL_HINT}."]
        problems = []
        if cfg.method in ("rks", "uks"):
            from pyscf.dft import libxc

            try:
                libxc.parse_xc(cfg.xc)
            except Exception:
                problems.append(f"label.xc {cfg.xc!r} is not a functional PySCF's libxc knows; "
                                "write a libxc name such as pbe, b3lyp, pbe0, scan.")
        basis = cfg.basis or {True: CELL_BASIS, False: MOLECULE_BASIS, None: None}[periodic]
        if basis:
            missing = [el for el in elements if not _basis_known(basis, el)]
            if missing:
                problems.append(f"basis {basis!r} has no entry for {', '.join(missing)} in PySCF's basis library; "
                                "set label.basis to one that covers them (e.g. def2-svp for molecules, "
                                "gth-dzvp-molopt-sr for periodic cells).")
        pseudo = cfg.pseudo or (CELL_PSEUDO if periodic else None)
        if pseudo:
            missing = [el for el in elements if not _pseudo_known(pseudo, el)]
            if missing:
                problems.append(f"pseudopotential {pseudo!r} has no entry for {', '.join(missing)} in PySCF's "
                                "GTH library; set label.pseudo to one that does (e.g. gth-pbe).")
        if cfg.dispersion:
            try:
                import pyscf.dispersion  # noqa: F401
            except ImportError:
                problems.append(f"label.dispersion {cfg.dispersion!r} needs the pyscf-dispersion package: "
                                "pip install pyscf-dispersion (or remove label.dispersion).")
            if periodic:
                problems.append("label.dispersion is supported for molecules only; remove it for periodic cells.")
        if periodic is False and cfg.kpts:
            problems.append("label.kpts is set but the frames are molecules; remove kpts.")
        return problems

    # ------------------------------------------------------------------ build
    def _build(self, atoms: Atoms, periodic: bool, workdir: Path):
        cfg = self.config
        geometry = [(s, tuple(float(x) for x in p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)]
        system = None
        try:
            if periodic:
                from pyscf.pbc import gto as pgto

                system = pgto.Cell()
                system.a = np.asarray(atoms.cell.array, dtype=float)
                system.basis = cfg.basis or CELL_BASIS
                system.pseudo = cfg.pseudo or CELL_PSEUDO
                if cfg.ke_cutoff:
                    system.ke_cutoff = cfg.ke_cutoff
            else:
                from pyscf import gto

                system = gto.Mole()
                system.basis = cfg.basis or MOLECULE_BASIS
                if cfg.pseudo:
                    system.pseudo = cfg.pseudo
            system.atom = geometry
            system.unit = "Angstrom"
            system.charge = cfg.charge
            system.spin = cfg.spin
            system.verbose = 4
            system.stdout = open(workdir / "pyscf.log", "w")  # not .output: PySCF would print the path
            system.build(parse_arg=False)  # never read sys.argv (pytest, dask-worker)
        except Exception as e:  # basis/pseudo unknown, charge and spin inconsistent: every frame would fail
            if system is not None and system.stdout is not sys.stdout:
                system.stdout.close()
            raise CalculationError(f"PySCF rejected the system: {type(e).__name__}: {e}", reason="input_rejected",
                                   physics=True, workdir=str(workdir),
                                   hint="check label.basis, label.pseudo, label.charge and label.spin "
                                        "(spin is 2S, the number of unpaired electrons)") from None
        return system

    def _kind(self, periodic: bool) -> str:
        """PySCF class name that labels this frame."""
        cfg = self.config
        base = cfg.method.upper()
        if periodic and (cfg.kpts or cfg.method in ("rhf", "uhf")):
            return "K" + base
        return base

    def _make_mf(self, system, periodic: bool):
        cfg = self.config
        kind = self._kind(periodic)
        dft = cfg.method in ("rks", "uks")
        if periodic:
            if cfg.dispersion:
                raise CalculationError("dispersion corrections are supported for molecules only",
                                       reason="unsupported", physics=True, hint="remove label.dispersion")
            from pyscf.pbc import dft as pdft
            from pyscf.pbc import scf as pscf

            if kind.startswith("K"):
                kpts = system.make_kpts(cfg.kpts or [1, 1, 1])
                cls = getattr(pdft if dft else pscf, kind)
                mf = cls(system, kpts=kpts, xc=cfg.xc) if dft else cls(system, kpts=kpts)
            else:
                mf = getattr(pdft, kind)(system, xc=cfg.xc).multigrid_numint()
        else:
            from pyscf import dft as mdft
            from pyscf import scf as mscf

            if dft:
                mf = getattr(mdft, kind)(system, xc=cfg.xc)
                if cfg.grids_level is not None:
                    mf.grids.level = cfg.grids_level
            else:
                mf = getattr(mscf, kind)(system)
            if cfg.dispersion:
                mf.disp = cfg.dispersion
        mf.conv_tol = cfg.conv_tol
        mf.init_guess = cfg.init_guess
        mf.chkfile = None
        return mf

    # ------------------------------------------------------------------ run
    def _scf(self, system, periodic: bool) -> tuple[object, list[dict]]:
        """SCF with the fallback ladder; returns the converged mean-field object and the tries."""
        cfg = self.config
        plan = [("first", cfg.level_shift, cfg.damp, False, cfg.max_cycle)]
        if cfg.fallback:
            plan += [("level_shift", max(cfg.fallback_level_shift, cfg.level_shift), 0.0, False, cfg.fallback_max_cycle),
                     ("newton", 0.0, 0.0, True, cfg.fallback_max_cycle)]
        tries: list[dict] = []
        dm = None
        mf = None
        for name, shift, damp, newton, max_cycle in plan:
            t = time.perf_counter()
            mf = self._make_mf(system, periodic)
            mf.level_shift = shift
            mf.damp = damp
            mf.max_cycle = max_cycle
            if newton:
                mf = mf.newton()
            counter = [0]
            mf.callback = lambda envs, c=counter: c.__setitem__(0, c[0] + 1)  # SOSCF keeps no mf.cycles
            record = {"try": name, "level_shift": shift, "newton": newton, "max_cycle": max_cycle}
            try:
                e = mf.kernel(dm0=dm) if dm is not None else mf.kernel()
                record.update(converged=bool(mf.converged), cycles=counter[0],
                              energy_hartree=float(e))
            except (NotImplementedError, MemoryError):
                raise
            except Exception as ex:  # a fallback that crashes is one more failed try
                if name == "first":
                    raise
                record.update(converged=False, error=f"{type(ex).__name__}: {ex}")
            record["wall_s"] = round(time.perf_counter() - t, 3)
            tries.append(record)
            log.debug("pyscf SCF try %s: %s", name, record)
            if record["converged"]:
                if newton:
                    mf = mf.undo_newton()
                return mf, tries
            try:
                dm = mf.make_rdm1()
            except Exception:
                dm = None
        summary = "; ".join(f"{r['try']}: {r.get('cycles', '?')} cycles" + (f" ({r['error']})" if "error" in r else "")
                            for r in tries)
        raise CalculationError(
            f"PySCF SCF did not converge after {len(tries)} tr{'y' if len(tries) == 1 else 'ies'} ({summary})",
            reason="scf_not_converged", physics=True,
            hint="raise label.max_cycle, loosen label.conv_tol, set label.level_shift"
                 + ("" if cfg.fallback else ", or enable label.fallback"))

    def _label(self, system, atoms: Atoms, periodic: bool, workdir: Path, t0: float) -> Labels:
        cfg = self.config
        mf, tries = self._scf(system, periodic)
        grad = mf.nuc_grad_method()
        g = np.asarray(grad.kernel(), dtype=float).reshape(len(atoms), 3)
        energy = hartree_to_ev(float(mf.e_tot))
        forces = -hartree_per_bohr_to_ev_per_angstrom(g)
        info = {"code": "pyscf", "class": self._kind(periodic) + (" multigrid" if periodic and not self._kind(periodic).startswith("K") else ""),
                "basis": system.basis if isinstance(system.basis, str) else str(system.basis),
                "scf_tries": tries, "n_tries": len(tries), "scf_cycles": sum(max(r.get("cycles", 0), 0) for r in tries),
                "threads": int(self.exec.threads)}
        stress = None
        if periodic:
            info["pseudo"] = system.pseudo
            if cfg.stress:
                stress, why = self._stress(mf, grad, system)
                if stress is None:
                    info["stress"] = why
            else:
                info["stress"] = "not requested (label.stress: false)"
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)) or (stress is not None and not np.all(np.isfinite(stress))):
            raise CalculationError("PySCF returned a non-finite energy, force or stress", reason="non_finite",
                                   physics=True, workdir=str(workdir))
        info["wall_s"] = round(time.perf_counter() - t0, 3)
        return Labels(energy=energy, forces=forces, stress=stress, info=info)

    def _stress(self, mf, grad, cell) -> tuple[Optional[np.ndarray], str]:
        """ASE-convention stress (Voigt, eV/Å³) or None and the reason."""
        cfg = self.config
        if cfg.method not in ("rks", "uks"):
            return None, "not available: PySCF has no periodic HF stress"
        from pyscf.dft import libxc

        if libxc.is_hybrid_xc(cfg.xc):
            return None, f"not available: PySCF has no stress for hybrid functionals ({cfg.xc})"
        try:
            if self._kind(True).startswith("K"):
                sigma = grad.get_stress()
            else:
                # gamma point: the multigrid path has no stress; PySCF's FFTDF stress code takes the
                # converged orbitals of a plain RKS/UKS object of the same cell and functional
                from pyscf.pbc import dft as pdft
                from pyscf.pbc.grad import rks as rks_grad
                from pyscf.pbc.grad import uks as uks_grad

                plain = getattr(pdft, cfg.method.upper())(cell, xc=cfg.xc)
                plain.mo_coeff, plain.mo_occ, plain.mo_energy = mf.mo_coeff, mf.mo_occ, mf.mo_energy
                plain.converged, plain.e_tot = True, mf.e_tot
                sigma = (rks_grad if cfg.method == "rks" else uks_grad).Gradients(plain).get_stress()
        except NotImplementedError as e:
            return None, f"not available: {e}"
        return voigt(np.asarray(sigma, dtype=float).reshape(3, 3)) * HARTREE_PER_BOHR3_TO_EV_PER_ANGSTROM3, ""


def _basis_known(name: str, element: str) -> bool:
    from pyscf.gto import basis

    try:
        with _quiet_warnings():
            return bool(basis.load(name, element))
    except Exception:
        return False


def _pseudo_known(name: str, element: str) -> bool:
    from pyscf.pbc.gto import pseudo

    try:
        return bool(pseudo.load(name, element))
    except Exception:
        return False


@contextlib.contextmanager
def _quiet_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield

"""CP2K as a labeler: runs ``cp2k.psmp -i elt.inp -o elt.out`` in the task's directory.

The input is the user's template or the short built-in form, with the frame written in by
:mod:`elt.labeling.cp2k_input` (RUN_TYPE ENERGY_FORCE; stress for periodic cells; molecules centred
in a box with an isolated Poisson solver). The command (default ``cp2k.psmp``) and an optional
launcher (``mpirun -n 4``, ``srun --mpi=pmix``) come from the cluster profile, and so does
``OMP_NUM_THREADS`` (always set; default 1: more threads than cores is much slower).

Failures:
- ``SCF run NOT converged`` in the output (CP2K 2023 still exits 0 and prints forces) → physics
  failure, reason ``scf_not_converged``;
- binary missing, non-zero exit, killed, time limit, missing or garbled output → infrastructure
  failure (``physics=False``) whose message ends with the tail of the output.
The task directory is kept (input, output, ``cp2k.stdout``) for diagnosis.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from functools import lru_cache
from pathlib import Path
from typing import Optional

from ase import Atoms
from ase.data import chemical_symbols

from elt.errors import CalculationError
from elt.labeling import cp2k_input, cp2k_output
from elt.labeling._geometry import check_distances, is_periodic, tail
from elt.labeling.base import Labeler, Labels
from elt.registry import register

DEFAULT_COMMAND = "cp2k.psmp"
INPUT, OUTPUT, STDOUT = "elt.inp", "elt.out", "cp2k.stdout"
INSTALL_HINT = ("install CP2K (Debian/Ubuntu: apt-get install cp2k) or set the label command of the cluster "
                "profile to the CP2K binary")
_ELEMENTS = {s.upper() for s in chemical_symbols[1:]}


@register("labeler", "cp2k")
class CP2KLabeler(Labeler):
    """Labels from CP2K (config: :class:`elt.config.label.CP2KLabel`)."""

    # ------------------------------------------------------------------ commands
    def command(self) -> list[str]:
        return shlex.split(self.exec.command or DEFAULT_COMMAND)

    def launcher(self) -> list[str]:
        return shlex.split(self.exec.launcher or "")

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = str(max(1, int(self.exec.threads)))
        return env

    # ------------------------------------------------------------------ input
    def input_text(self, atoms: Atoms) -> str:
        """The CP2K input elt runs for ``atoms`` (for inspection and dry runs)."""
        periodic = is_periodic(atoms)
        return self._input(atoms, periodic)[0]

    def _input(self, atoms: Atoms, periodic: bool) -> tuple[str, cp2k_input.Placement]:
        cfg = self.config
        if cfg.template is not None:
            try:
                text = Path(cfg.template).read_text()
            except OSError as e:
                raise CalculationError(f"cannot read the CP2K template {str(cfg.template)!r}: {e}",
                                       reason="template_unreadable", physics=False,
                                       hint="give label.template as a path the workers can read") from None
        else:
            text = cp2k_input.builtin_text(cfg)
        try:
            root = cp2k_input.parse(text)
            placement = cp2k_input.place(atoms, periodic, cfg.vacuum, cubic=_wavelet(root, cfg))
            cp2k_input.prepare(root, atoms, placement, cfg, template=cfg.template is not None)
        except cp2k_input.InputError as e:
            raise CalculationError(f"the CP2K template {cfg.template} cannot be used: {e}", reason="template_invalid",
                                   physics=True, hint="fix the template; `elt validate` checks it") from None
        return root.text(), placement

    # ------------------------------------------------------------------ run
    def compute(self, atoms: Atoms, workdir: Path) -> Labels:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        periodic = is_periodic(atoms)
        check_distances(atoms, periodic)
        text, placement = self._input(atoms, periodic)
        (workdir / INPUT).write_text(text)
        for stale in (OUTPUT, STDOUT):  # a retry in the same directory must not read an old output
            (workdir / stale).unlink(missing_ok=True)

        t0 = time.perf_counter()
        rc = self._run(workdir)
        wall = time.perf_counter() - t0
        out = _read(workdir / OUTPUT)

        if out is not None and cp2k_output.scf_failed(out):
            raise CalculationError(
                f"CP2K: SCF run NOT converged within MAX_SCF (workdir {workdir})",
                reason="scf_not_converged", physics=True, workdir=str(workdir),
                hint="raise label.max_scf, loosen label.eps_scf, or use a template with OT, smearing "
                     "or a better SCF_GUESS")
        if rc != 0:
            reason = "killed" if rc < 0 else "nonzero_exit"
            what = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            abort = cp2k_output.abort_message(out or "")
            what += f": {abort}" if abort else ""
            raise self._infra(f"CP2K {what}", reason, workdir, out)
        if out is None:
            raise self._infra("CP2K exited 0 but wrote no output file", "output_missing", workdir, out)
        try:
            res = cp2k_output.parse(out, atoms.get_chemical_symbols())
        except cp2k_output.OutputError as e:
            raise self._infra(f"CP2K output is incomplete or garbled: {e}", "output_garbled", workdir, out) from None

        stress = res.stress if periodic else None
        info = {"code": "cp2k", "scf_steps": res.scf_steps, "wall_s": round(wall, 3), "workdir": str(workdir),
                "threads": int(self.exec.threads), "command": " ".join(self.launcher() + self.command()),
                "input": "template" if self.config.template is not None else "builtin"}
        if not periodic:
            info["box"] = placement.box
            info["box_lengths"] = [round(float(x), 6) for x in placement.cell.diagonal()]
        elif stress is None:
            info["stress"] = "not printed (the input sets STRESS_TENSOR NONE)"
        return Labels(energy=res.energy, forces=res.forces, stress=stress, info=info)

    def _run(self, workdir: Path) -> int:
        cmd = self.launcher() + self.command()
        missing = [c for c in ([self.launcher()[0]] if self.launcher() else []) + [self.command()[0]]
                   if shutil.which(c) is None]
        if missing:
            raise CalculationError(f"CP2K cannot start: {', '.join(repr(m) for m in missing)} not found on PATH",
                                   reason="binary_missing", physics=False, workdir=str(workdir), hint=INSTALL_HINT)
        limit = self.config.time_limit
        with open(workdir / STDOUT, "wb") as log:
            try:
                proc = subprocess.Popen(cmd + ["-i", INPUT, "-o", OUTPUT], cwd=workdir, env=self.environment(),
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as e:
                raise CalculationError(f"CP2K cannot start: {e}", reason="binary_missing", physics=False,
                                       workdir=str(workdir), hint=INSTALL_HINT) from None
            try:
                return proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise self._infra(f"CP2K ran past label.time_limit ({limit:g} s) and was killed", "time_limit",
                                  workdir, _read(workdir / OUTPUT)) from None
            except BaseException:  # the task was cancelled: do not leave CP2K running
                _kill_group(proc)
                raise

    def _infra(self, what: str, reason: str, workdir: Path, out: Optional[str]) -> CalculationError:
        parts = [f"{what} (workdir {workdir})"]
        if out:
            parts.append(f"--- last lines of {OUTPUT} ---\n{tail(out)}")
        stdout = _read(workdir / STDOUT)
        if stdout and stdout.strip():
            parts.append(f"--- last lines of {STDOUT} ---\n{tail(stdout, 15)}")
        return CalculationError("\n".join(parts), reason=reason, physics=False, workdir=str(workdir))

    # ------------------------------------------------------------------ check
    def check(self, elements: list[str], periodic: Optional[bool] = None) -> list[str]:
        """Binary found and runs; basis and potential names exist in the data files for ``elements``;
        the template (if any) is readable and usable."""
        cfg = self.config
        problems: list[str] = []
        cmd = self.command()
        if not cmd or shutil.which(cmd[0]) is None:
            return [f"CP2K command {' '.join(cmd) or '(empty)'!r} not found on PATH; {INSTALL_HINT}."]
        if self.launcher() and shutil.which(self.launcher()[0]) is None:
            problems.append(f"launcher {self.exec.launcher!r} not found on PATH; fix the launcher of the cluster profile.")
        ok, version_text = _version(tuple(cmd))
        if not ok:
            return problems + [f"CP2K command {' '.join(cmd)!r} does not run ({version_text}); "
                               f"check the installation or the command of the cluster profile."]

        files = (cfg.basis_file, cfg.potential_file)
        names = {el.upper(): ([cfg.basis], [cfg.potential]) for el in elements}
        if cfg.template is not None:
            try:
                root = cp2k_input.parse(Path(cfg.template).read_text())
            except OSError as e:
                return problems + [f"label.template {str(cfg.template)!r} cannot be read ({e.strerror}); "
                                   "give a path to a CP2K input file."]
            except cp2k_input.InputError as e:
                return problems + [f"label.template {str(cfg.template)!r} is not a CP2K input elt can read: {e}."]
            if len(root.subsections("FORCE_EVAL")) != 1 or root.find("FORCE_EVAL/DFT") is None:
                problems.append(f"label.template {str(cfg.template)!r} needs exactly one &FORCE_EVAL with a &DFT section.")
            dft = root.find("FORCE_EVAL/DFT")
            if dft is not None:
                files = (dft.keywords("BASIS_SET_FILE_NAME") or ["BASIS_SET"],
                         dft.keywords("POTENTIAL_FILE_NAME") or ["POTENTIAL"])
                files = (tuple(files[0]), tuple(files[1]))
            kinds = cp2k_input.kind_names(root)
            for el in names:
                if el in kinds:
                    names[el] = kinds[el]
        data_dir = _data_dir(version_text)
        problems += _check_names(names, files, data_dir)
        return problems


# ------------------------------------------------------------------ helpers
def _wavelet(root: cp2k_input.Section, cfg) -> bool:
    """Whether the molecule's box must be cubic (CP2K's wavelet Poisson solver needs it)."""
    poisson = root.find("FORCE_EVAL/DFT/POISSON")
    if poisson is not None and poisson.keyword("PSOLVER"):
        return poisson.keyword("PSOLVER").upper().startswith("WAVELET")
    return cfg.poisson == "wavelet"


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


@lru_cache(maxsize=8)
def _version(cmd: tuple[str, ...]) -> tuple[bool, str]:
    """(runs, output of ``CMD --version``) or (False, why)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        p = subprocess.run(list(cmd) + ["--version"], capture_output=True, text=True, timeout=120, env=env,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    out = (p.stdout or "") + (p.stderr or "")
    if p.returncode != 0 or "CP2K version" not in out:
        return False, f"exit status {p.returncode}: {tail(out, 5) or 'no output'}"
    return True, out


def _data_dir(version_text: str = "") -> Optional[Path]:
    """CP2K's data directory: $CP2K_DATA_DIR, the one compiled in (``--version``), or a usual place."""
    candidates = []
    if os.environ.get("CP2K_DATA_DIR"):
        candidates.append(Path(os.environ["CP2K_DATA_DIR"]))
    joined = re.sub(r"\n\s*", "", version_text)  # --version wraps long lines
    m = re.search(r'__DATA_DIR="([^"]+)"', joined)
    if m:
        candidates.append(Path(m.group(1)))
    exe = shutil.which(DEFAULT_COMMAND)
    if exe:
        prefix = Path(exe).resolve().parent.parent
        candidates += [prefix / "share" / "cp2k" / "data", prefix / "share" / "cp2k"]
    candidates += [Path("/usr/share/cp2k/data"), Path("/usr/share/cp2k")]
    for c in candidates:
        if (c / "BASIS_MOLOPT").is_file() or (c / "GTH_POTENTIALS").is_file():
            return c
    return None


def _resolve(name: str, data_dir: Optional[Path]) -> Optional[Path]:
    p = Path(name).expanduser()
    if p.is_file():
        return p
    if data_dir is not None and (data_dir / name).is_file():
        return data_dir / name
    return None


@lru_cache(maxsize=32)
def _entries(path: Path, mtime: float) -> frozenset[tuple[str, str]]:
    """(ELEMENT, NAME) pairs of a CP2K basis or potential file (names upper case)."""
    out = set()
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 2 and parts[0].upper() in _ELEMENTS:
                out.update((parts[0].upper(), n.upper()) for n in parts[1:])
    return frozenset(out)


def _check_names(names: dict[str, tuple[list[str], list[str]]], files, data_dir: Optional[Path]) -> list[str]:
    problems = []
    for what, file_names, index in (("basis set", files[0], 0), ("potential", files[1], 1)):
        file_names = [file_names] if isinstance(file_names, str) else list(file_names)
        paths = []
        for fn in file_names:
            p = _resolve(fn, data_dir)
            if p is None:
                where = f"CP2K's data directory {data_dir}" if data_dir else "CP2K's data directory (not found)"
                problems.append(f"{what} file {fn!r} not found as a path nor in {where}; "
                                "give an existing file name (e.g. BASIS_MOLOPT, GTH_POTENTIALS) or set CP2K_DATA_DIR.")
            else:
                paths.append(p)
        if not paths:
            continue
        entries = set().union(*(_entries(p, p.stat().st_mtime) for p in paths))
        missing: dict[str, list[str]] = {}
        for el, pair in sorted(names.items()):
            for name in pair[index]:
                if name.upper() not in ("ALL", "NONE") and (el, name.upper()) not in entries:
                    missing.setdefault(name, []).append(el.capitalize())
        for name, els in missing.items():
            problems.append(f"{what} {name!r} has no entry for {', '.join(els)} in "
                            f"{', '.join(str(p) for p in paths)}; choose a {what} listed there for these elements "
                            f"(e.g. `grep '^ *{els[0]} ' {paths[0]}`).")
    return problems

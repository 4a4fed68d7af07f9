"""CP2K input files: a small section tree (parse, edit, write), the short built-in form, and the
frame-specific edits applied to a user template or to the built-in form alike.

What elt writes into every input, whatever its origin:
- ``GLOBAL``: ``RUN_TYPE ENERGY_FORCE``, ``PROJECT elt``; any ``EXT_RESTART`` is dropped.
- ``FORCE_EVAL/SUBSYS``: the cell (A, B, C in Å) and the coordinates (Å) of the frame; coordinate
  and cell files, ``MULTIPLE_UNIT_CELL`` and ``SCALED``/``UNIT`` keywords are removed; a ``KIND`` with
  the configured basis and potential is added for every element the input lacks.
- ``FORCE_EVAL/PRINT/FORCES ON`` (to the main output); for periodic cells
  ``STRESS_TENSOR ANALYTICAL`` (unless the input chose another method or NONE) and
  ``PRINT/STRESS_TENSOR ON``.

Molecules (frames with no periodic direction) are centred in a box: the frame's own cell when it
has an orthorhombic one (cubic for the wavelet solver) that holds the molecule with
``MIN_MARGIN`` Å to spare, so that the grid is the same for every frame of a campaign; otherwise
a box of the molecule's extent plus ``vacuum`` on each side, rounded up to whole Å (cubic for
wavelet). With ``poisson`` wavelet or mt the box is non-periodic (``PERIODIC NONE`` in CELL and
POISSON); with ``periodic`` it is an ordinary periodic box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import numpy as np
from ase import Atoms

MIN_MARGIN = 2.0  # Å of box around a molecule, below which elt builds its own box
PROJECT = "elt"


class InputError(ValueError):
    """A CP2K input that elt cannot read or use."""


# ------------------------------------------------------------------ section tree
class Section:
    """One ``&NAME params ... &END NAME`` block: an ordered list of keyword lines (str) and
    subsections. Names compare case-insensitively, as CP2K does."""

    def __init__(self, name: str, params: str = ""):
        self.name = name.upper()
        self.params = params.strip()
        self.items: list[Union[str, "Section"]] = []

    # --- reading
    def subsections(self, name: str) -> list["Section"]:
        name = name.upper()
        return [s for s in self.items if isinstance(s, Section) and s.name == name]

    def find(self, path: str) -> Optional["Section"]:
        """The section at ``path`` (``FORCE_EVAL/DFT/SCF``) or None; the first of repeated ones."""
        node: Optional[Section] = self
        for part in path.split("/"):
            found = node.subsections(part) if node is not None else []
            if not found:
                return None
            node = found[0]
        return node

    def keywords(self, key: str) -> list[str]:
        """The values (rest of the line) of every ``key`` line in this section."""
        key = key.upper()
        out = []
        for item in self.items:
            if isinstance(item, str) and not item.startswith("@"):
                parts = item.split(None, 1)
                if parts and parts[0].upper() == key:
                    out.append(parts[1].strip() if len(parts) > 1 else "")
        return out

    def keyword(self, key: str) -> Optional[str]:
        values = self.keywords(key)
        return values[-1] if values else None

    # --- editing
    def section(self, path: str) -> "Section":
        """The section at ``path``, created (empty, appended) where missing."""
        node = self
        for part in path.split("/"):
            found = node.subsections(part)
            if found:
                node = found[0]
            else:
                child = Section(part)
                node.items.append(child)
                node = child
        return node

    def remove(self, *keys: str) -> None:
        keys_u = {k.upper() for k in keys}
        self.items = [i for i in self.items
                      if not (isinstance(i, str) and i.split(None, 1) and i.split(None, 1)[0].upper() in keys_u)]

    def remove_sections(self, *names: str) -> None:
        names_u = {n.upper() for n in names}
        self.items = [i for i in self.items if not (isinstance(i, Section) and i.name in names_u)]

    def set(self, key: str, value) -> None:
        """Replace every ``key`` line by one ``key value`` line (at the first one's place)."""
        key_u = key.upper()
        line = f"{key_u} {value}".rstrip()
        for n, item in enumerate(self.items):
            if isinstance(item, str) and item.split(None, 1) and item.split(None, 1)[0].upper() == key_u:
                self.remove(key)
                self.items.insert(n, line)
                return
        # keywords before subsections reads best
        n = next((k for k, i in enumerate(self.items) if isinstance(i, Section)), len(self.items))
        self.items.insert(n, line)

    # --- writing
    def lines(self, indent: int = 0) -> Iterator[str]:
        pad = "  " * indent
        for item in self.items:
            if isinstance(item, str):
                yield (item if item.startswith("@") else pad + item)
            else:
                yield f"{pad}&{item.name}" + (f" {item.params}" if item.params else "")
                yield from item.lines(indent + 1)
                yield f"{pad}&END {item.name}"

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"


_COMMENT = re.compile(r"[!#]")


def _strip_comment(line: str) -> str:
    # CP2K comments start at '!' or '#' (outside quotes, which elt's inputs do not need)
    if '"' not in line and "'" not in line:
        m = _COMMENT.search(line)
        if m:
            line = line[: m.start()]
    return line.strip()


def parse(text: str) -> Section:
    """Parse CP2K input text into a tree. Preprocessor lines (``@SET``, ``@INCLUDE``, ...) are kept
    as they are; unbalanced ``&END`` raises :class:`InputError`."""
    root = Section("CP2K_INPUT")
    stack = [root]
    for n, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line:
            continue
        if line.upper().startswith("&END"):
            if len(stack) == 1:
                raise InputError(f"line {n}: {line!r} closes a section that was never opened")
            name = line[4:].strip().upper()
            if name and name != stack[-1].name:
                raise InputError(f"line {n}: {line!r} closes &{stack[-1].name}")
            stack.pop()
        elif line.startswith("&"):
            parts = line[1:].split(None, 1)
            if not parts:
                raise InputError(f"line {n}: a bare '&'")
            section = Section(parts[0], parts[1] if len(parts) > 1 else "")
            stack[-1].items.append(section)
            stack.append(section)
        else:
            stack[-1].items.append(line)
    if len(stack) > 1:
        raise InputError(f"section &{stack[-1].name} is not closed (missing &END {stack[-1].name})")
    return root


# ------------------------------------------------------------------ the built-in form
def builtin_text(cfg) -> str:
    """The short form of :class:`elt.config.label.CP2KLabel` as a CP2K input without geometry."""
    uks = "    UKS\n" if cfg.multiplicity > 1 else ""
    return f"""&GLOBAL
  PROJECT {PROJECT}
  RUN_TYPE ENERGY_FORCE
  PRINT_LEVEL LOW
&END GLOBAL
&FORCE_EVAL
  METHOD QUICKSTEP
  &DFT
    BASIS_SET_FILE_NAME {cfg.basis_file}
    POTENTIAL_FILE_NAME {cfg.potential_file}
    CHARGE {cfg.charge}
    MULTIPLICITY {cfg.multiplicity}
{uks}    &MGRID
      CUTOFF {cfg.cutoff:g}
      REL_CUTOFF {cfg.rel_cutoff:g}
    &END MGRID
    &QS
      EPS_DEFAULT 1.0E-12
    &END QS
    &SCF
      SCF_GUESS ATOMIC
      MAX_SCF {cfg.max_scf}
      EPS_SCF {cfg.eps_scf:g}
    &END SCF
    &XC
      &XC_FUNCTIONAL {cfg.xc}
      &END XC_FUNCTIONAL
    &END XC
  &END DFT
  &SUBSYS
  &END SUBSYS
&END FORCE_EVAL
"""


# ------------------------------------------------------------------ geometry
@dataclass
class Placement:
    """Where a frame goes in the CP2K cell."""

    cell: np.ndarray          # (3, 3) Å, rows A, B, C
    positions: np.ndarray     # (N, 3) Å
    periodic: bool            # the frame is a 3D periodic cell
    box: str                  # 'frame' (cell of the frame) or 'built' (extent + vacuum); '' for periodic


def place(atoms: Atoms, periodic: bool, vacuum: float, cubic: bool = False) -> Placement:
    """Cell and positions for CP2K. Molecules are centred; ``cubic`` (the wavelet solver needs it)
    makes a built box cubic and rejects a frame cell that is not."""
    pos = np.asarray(atoms.positions, dtype=float)
    if periodic:
        return Placement(np.asarray(atoms.cell.array, dtype=float), pos, True, "")
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    extent = hi - lo
    cell = np.asarray(atoms.cell.array, dtype=float)
    lengths = np.diag(cell)
    usable = (atoms.cell.rank == 3 and np.allclose(cell - np.diag(lengths), 0.0, atol=1e-8)
              and np.all(lengths >= extent + 2 * MIN_MARGIN)
              and (not cubic or np.allclose(lengths, lengths[0], atol=1e-8)))
    if usable:
        box, how = np.diag(lengths), "frame"
    else:
        edges = np.ceil(extent + 2 * vacuum)  # whole Å: fewer grid changes between frames
        box, how = np.diag(np.full(3, edges.max()) if cubic else edges), "built"
    shift = 0.5 * np.diag(box) - 0.5 * (lo + hi)
    return Placement(box, pos + shift, False, how)


# ------------------------------------------------------------------ the edits
def prepare(root: Section, atoms: Atoms, placement: Placement, cfg, *, template: bool) -> Section:
    """Apply the frame-specific edits (see the module docstring) to ``root`` in place."""
    force_evals = root.subsections("FORCE_EVAL")
    if len(force_evals) != 1:
        raise InputError(f"the input needs exactly one &FORCE_EVAL section, found {len(force_evals)}")
    fe = force_evals[0]
    glob = root.section("GLOBAL")
    glob.remove("PROJECT_NAME")
    glob.set("PROJECT", PROJECT)
    glob.set("RUN_TYPE", "ENERGY_FORCE")
    root.remove_sections("EXT_RESTART")

    dft = fe.section("DFT")
    explicit = cfg.model_fields_set
    if not template or "charge" in explicit:
        dft.set("CHARGE", cfg.charge)
    if not template or "multiplicity" in explicit:
        dft.set("MULTIPLICITY", cfg.multiplicity)
        if cfg.multiplicity > 1 and not any(dft.keyword(k) not in (None, "F", "FALSE", ".FALSE.", "OFF")
                                            for k in ("UKS", "LSD", "UNRESTRICTED_KOHN_SHAM")):
            dft.set("UKS", "")

    subsys = fe.section("SUBSYS")
    cell = subsys.section("CELL")
    cell.remove("A", "B", "C", "ABC", "ALPHA_BETA_GAMMA", "CELL_FILE_NAME", "CELL_FILE_FORMAT", "MULTIPLE_UNIT_CELL")
    cell.remove_sections("CELL_REF")
    for key, row in zip("ABC", placement.cell):
        cell.set(key, " ".join(f"{x:.10f}" for x in row))
    if placement.periodic:
        if not template or cell.keyword("PERIODIC") is None:
            cell.set("PERIODIC", "XYZ")
        stress = fe.keyword("STRESS_TENSOR")
        if stress is None:
            fe.set("STRESS_TENSOR", "ANALYTICAL")
            stress = "ANALYTICAL"
        if stress.upper() != "NONE":
            _print_on(fe.section("PRINT/STRESS_TENSOR"))
    else:
        fe.remove("STRESS_TENSOR")
        if not template or cell.keyword("PERIODIC") is None:
            if cfg.poisson == "periodic":
                cell.set("PERIODIC", "XYZ")
            else:
                cell.set("PERIODIC", "NONE")
                poisson = dft.section("POISSON")
                poisson.set("PERIODIC", "NONE")
                poisson.set("PSOLVER", cfg.poisson.upper())
    _print_on(fe.section("PRINT/FORCES"))

    topology = subsys.find("TOPOLOGY")
    if topology is not None:
        topology.remove("COORD_FILE_NAME", "COORD_FILE_FORMAT", "CONN_FILE_NAME", "CONN_FILE_FORMAT",
                        "NUMBER_OF_ATOMS", "MULTIPLE_UNIT_CELL")
    subsys.remove_sections("COORD")
    coord = Section("COORD")
    for sym, p in zip(atoms.get_chemical_symbols(), placement.positions):
        coord.items.append(f"{sym} {p[0]:.10f} {p[1]:.10f} {p[2]:.10f}")
    subsys.items.insert(_after(subsys, "CELL"), coord)

    kinds = {s.params.split()[0].upper() for s in subsys.subsections("KIND") if s.params}
    for sym in sorted(set(atoms.get_chemical_symbols())):
        if sym.upper() not in kinds:
            kind = Section("KIND", sym)
            kind.items += [f"BASIS_SET {cfg.basis}", f"POTENTIAL {cfg.potential}"]
            subsys.items.append(kind)
    return root


def _print_on(section: Section) -> None:
    section.params = "ON"
    section.remove("FILENAME", "ADD_LAST", "COMMON_ITERATION_LEVELS")


def _after(parent: Section, name: str) -> int:
    for n, item in enumerate(parent.items):
        if isinstance(item, Section) and item.name == name.upper():
            return n + 1
    return len(parent.items)


def kind_names(root: Section) -> dict[str, tuple[list[str], list[str]]]:
    """Kind name (upper case; elt writes coordinates with element symbols, so an element is covered
    by the &KIND of that name) → (basis names, potential names)."""
    subsys = root.find("FORCE_EVAL/SUBSYS")
    out: dict[str, tuple[list[str], list[str]]] = {}
    if subsys is None:
        return out
    for kind in subsys.subsections("KIND"):
        if not kind.params:
            continue
        element = kind.params.split()[0].upper()
        bases = [v.split()[-1] for v in kind.keywords("BASIS_SET") if v.split()]
        pots = [v.split()[-1] for v in kind.keywords("POTENTIAL") if v.split()]
        out[element] = (bases, pots)
    return out

"""workflow.yaml: what to compute. Validated once at the boundary, then frozen."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import Field, PositiveFloat, ValidationError, field_validator, model_validator

from elt.config.base import Strict, format_validation_error, plugin_section
from elt.config.label import EMTLabel
from elt.config.sampling import BIASED_BEYOND_HI, AdaptiveLo, AseExplorer, AutoLevels, BeyondHi, Bias, MetadConfig
from elt.config.train import DeepMDTrain
from elt.errors import ConfigError
from elt.records import ident


# ---------------------------------------------------------------- system
class FileStructure(Strict):
    kind: Literal["file"] = "file"
    path: Path = Field(description="Structure file ASE (or pymatgen) can read: xyz, extxyz, POSCAR, CIF, ASE db.")
    index: str = Field(":", description="Which frames of the file (ASE index syntax, e.g. ':' or '0' or '-1').")
    format: Optional[str] = Field(None, description="Reader format when the extension does not tell (e.g. vasp).")


class BulkStructure(Strict):
    kind: Literal["bulk"] = "bulk"
    element: str = Field(description="Chemical symbol or formula, as ase.build.bulk takes it (e.g. Cu, NaCl).")
    crystal: Optional[str] = Field(None, description="Crystal structure (fcc, bcc, hcp, diamond, rocksalt, ...); default: ASE's reference.")
    a: Optional[float] = Field(None, gt=0, description="Lattice constant (Å); default: ASE's reference value.")
    cubic: bool = Field(True, description="Use the conventional cubic cell.")
    supercell: list[int] = Field(default_factory=lambda: [1, 1, 1], description="Repetitions along a, b, c.")

    @field_validator("supercell")
    @classmethod
    def _three(cls, v):
        if len(v) != 3 or any(x < 1 for x in v):
            raise ValueError("supercell needs three positive integers, e.g. [2, 2, 2]")
        return v


class MoleculeStructure(Strict):
    kind: Literal["molecule"] = "molecule"
    name: str = Field(description="Molecule name from ASE's collections (ase.build.molecule), e.g. H2O, CH4.")
    vacuum: Optional[float] = Field(None, ge=0, description="Put the molecule in a box with this much vacuum (Å); None keeps it non-periodic.")


Structure = Annotated[Union[FileStructure, BulkStructure, MoleculeStructure], Field(discriminator="kind")]


class InitialData(Strict):
    path: Path = Field(description="Labeled frames: extxyz file, or a deepmd/npy system folder.")
    format: Literal["auto", "extxyz", "deepmd-npy"] = Field("auto", description="How to read it.")
    energy_key: str = Field("energy", description="extxyz info key of the energy (eV).")
    forces_key: str = Field("forces", description="extxyz array key of the forces (eV/Å).")
    stress_key: str = Field("stress", description="extxyz info key of the stress (eV/Å³), if present.")


class SystemConfig(Strict):
    structures: list[Structure] = Field(min_length=1, description="Start structures of the walkers.")
    elements: Optional[list[str]] = Field(None, description="Elements the potential covers; default: those of the start structures and data.")
    initial_data: list[InitialData] = Field(default_factory=list, description="Labeled frames to start from.")
    n_initial: int = Field(8, ge=0, description="When the initial data are fewer than this, label perturbed copies of the start structures to make up the difference.")
    perturb_positions: float = Field(0.05, ge=0, description="Std of the Gaussian position perturbation of initial frames (Å).")
    perturb_cell: float = Field(0.02, ge=0, description="Max relative strain of the cell of initial frames (periodic only).")

    @field_validator("structures", mode="before")
    @classmethod
    def _shorthand(cls, v):
        # a bare string is a file path
        if isinstance(v, (str, dict)):
            v = [v]
        return [{"kind": "file", "path": x} if isinstance(x, str) else x for x in v]


# ---------------------------------------------------------------- explore
ExplorerSection = plugin_section("explorer", "ase")  # ase or an installed explorer plugin


class StageConfig(Strict):
    ADDED = frozenset({"explorer", "save_frames", "beyond_hi"})

    name: Optional[str] = Field(None, description="Label of the stage in reports.")
    temperatures: list[Annotated[float, Field(gt=0, le=1e5)]] = Field(default_factory=lambda: [300.0], min_length=1, description="Temperatures (K, above 0); one walker set per value.")
    pressures: Optional[list[Annotated[float, Field(ge=-1e3, le=1e4)]]] = Field(None, description="Pressures (GPa, -1000 to 10000; negative is tension) for npt; one walker set per temperature×pressure.")
    ensemble: Literal["nvt", "nve", "npt"] = Field("nvt", description="nvt: Langevin; nve: velocity Verlet; npt: Berendsen-type barostat.")
    timestep: float = Field(2.0, gt=0, le=10, description="MD timestep (fs).")
    steps: int = Field(1000, ge=1, description="MD steps per walker.")
    record_every: int = Field(10, ge=1, description="Record every N-th step for deviation and selection.")
    walkers_per_structure: int = Field(1, ge=1, description="Independent walkers (different seeds) per start structure and condition.")
    friction: float = Field(0.02, gt=0, description="Langevin friction (1/fs).")
    min_distance: float = Field(0.5, gt=0, description="A walker stops when two atoms come closer than this (Å).")
    stop_at_failed: bool = Field(True, description="Stop a walker at its first frame at or above trust_hi (the rest would be off the map).")
    max_iterations: int = Field(5, ge=1, description="Most iterations spent in this stage before moving on.")
    accurate_ratio: Optional[float] = Field(None, gt=0, le=1, description="The stage is done when the accurate ratio reaches this; default: converge.accurate_ratio.")
    trust_lo: Optional[float] = Field(None, gt=0, description="Override select.trust_lo for this stage (eV/Å).")
    trust_hi: Optional[float] = Field(None, gt=0, description="Override select.trust_hi for this stage (eV/Å).")
    max_energy_jump: Optional[float] = Field(1.0, gt=0, description="A walker stops (energy_spike) when its unbiased potential energy changes by more than this per atom between two recorded frames (eV/atom); null: no check.")
    bias: Optional[Bias] = Field(None, description="Bias of the walkers: kind udd or hal (uncertainty-driven) or flatten (the seeds' flattening); null: plain MD.")
    metad: Optional[MetadConfig] = Field(None, description="Metadynamics on collective variables (Gaussian hills); null: none.")
    save_frames: bool = Field(False, description="Write every recorded frame of each walker to frames.extxyz in its task folder (for analysis; off by default: trajectories are large).")
    beyond_hi: Optional[BeyondHi] = Field(None, description="What a walker does at a frame at or above trust_hi when stop_at_failed is true (stop, continue for some steps, or restart from its last frame below trust_hi); such frames are never labeled. null: stop for plain MD; for stages with a bias or metad, " + BIASED_BEYOND_HI.summary() + ".")
    explorer: ExplorerSection = Field(default_factory=AseExplorer, description="The MD engine of the walkers: a mapping with its kind (ase: the reference, one walker per task) and that explorer's settings; a bare name is short for {kind: NAME}.")

    @model_validator(mode="after")
    def _check(self):
        if self.ensemble == "npt" and not self.pressures:
            raise ValueError("ensemble npt needs pressures (GPa), e.g. pressures: [0.0]")
        if self.record_every > self.steps:
            raise ValueError(f"record_every ({self.record_every}) exceeds steps ({self.steps})")
        return self

    def past_hi(self) -> BeyondHi:
        """The rule at frames at or above trust_hi: ``beyond_hi``, else stop for plain MD and
        the biased default for stages with a bias or metadynamics."""
        if self.beyond_hi is not None:
            return self.beyond_hi
        return BIASED_BEYOND_HI if (self.bias is not None or self.metad is not None) else BeyondHi(mode="stop")


class ExploreConfig(Strict):
    stages: list[StageConfig] = Field(default_factory=lambda: [StageConfig()], min_length=1, description="Exploration stages, run in order.")
    threads: int = Field(1, ge=1, description="torch threads per exploration task.")


# ---------------------------------------------------------------- select
class SelectConfig(Strict):
    ADDED = frozenset({"auto"})

    trust_lo: Union[PositiveFloat, Literal["auto"]] = Field(0.05, description="Max force deviation (eV/Å) below which a frame is accurate; auto: derived each iteration from the ensemble's validation error and the calibrated deviation (see select.auto).")
    trust_hi: Union[PositiveFloat, Literal["auto"]] = Field(0.25, description="Max force deviation (eV/Å) at or above which a frame is failed (not labeled); auto: hi_factor × trust_lo within select.auto's floor and ceiling.")
    auto: AutoLevels = Field(default_factory=AutoLevels, description="Floors, ceilings and factors of the automatic trust levels (used where trust_lo or trust_hi is auto).")
    energy_trust_lo: Optional[float] = Field(None, gt=0, description="Optional energy deviation per atom (eV) criterion, lower level.")
    energy_trust_hi: Optional[float] = Field(None, gt=0, description="Optional energy deviation per atom (eV) criterion, upper level.")
    max_candidates: int = Field(20, ge=0, description="Most frames labeled per iteration.")
    strategy: Literal["random", "highest", "fps"] = Field("random", description="Which candidates to keep when there are more than max_candidates: at random, the highest deviations, or fps (farthest-point sampling on the ensemble's descriptors averaged per frame, for diversity).")
    max_per_walker: Optional[int] = Field(None, ge=1, description="Most candidates one walker may contribute.")
    stream: bool = Field(False, description="Label a walker's candidates as soon as that walker finishes (each walker gets an equal share of max_candidates), instead of waiting for every walker and choosing among all candidates: labels overlap with slow walkers. Not with adaptive_lo or strategy fps.")
    adaptive_lo: Optional[AdaptiveLo] = Field(None, description="Choose trust_lo per iteration so that a number or fraction of the frames below trust_hi become candidates (dpgen2's adaptive-lower); trust_lo is then unused (see lo_min).")

    @field_validator("trust_lo", "trust_hi", mode="before")
    @classmethod
    def _level(cls, v):
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        try:
            x = float(v) if not isinstance(v, bool) else None
        except (TypeError, ValueError):
            x = None
        if x is None or not x > 0 or x == float("inf"):
            raise ValueError("expected a max force deviation in eV/Å (a number > 0, e.g. 0.15) or auto")
        return x

    @model_validator(mode="after")
    def _check(self):
        numbers = not isinstance(self.trust_lo, str) and not isinstance(self.trust_hi, str)
        if numbers and self.trust_lo >= self.trust_hi:
            raise ValueError(f"trust_lo ({self.trust_lo}) must be below trust_hi ({self.trust_hi})")
        if isinstance(self.trust_hi, str) and not isinstance(self.trust_lo, str) and self.trust_lo >= self.auto.hi_max:
            raise ValueError(f"trust_lo ({self.trust_lo}) must be below select.auto.hi_max ({self.auto.hi_max}), "
                             "the ceiling of trust_hi: auto")
        if (self.energy_trust_lo is None) != (self.energy_trust_hi is None):
            raise ValueError("give both energy_trust_lo and energy_trust_hi, or neither")
        if self.energy_trust_lo is not None and self.energy_trust_lo >= self.energy_trust_hi:
            raise ValueError("energy_trust_lo must be below energy_trust_hi")
        if self.stream and (self.adaptive_lo is not None or self.strategy == "fps"):
            raise ValueError("stream: true chooses each walker's labels alone; it does not combine with adaptive_lo "
                             "or strategy fps, which compare all walkers' frames (set stream: false)")
        if self.adaptive_lo is not None and self.trust_lo == "auto":
            raise ValueError("trust_lo: auto and adaptive_lo both choose trust_lo; keep one (adaptive_lo.lo_min "
                             "sets a floor for adaptive_lo, trust_hi may stay auto)")
        if (self.adaptive_lo is not None and self.adaptive_lo.lo_min is not None and not isinstance(self.trust_hi, str)
                and self.adaptive_lo.lo_min >= self.trust_hi):
            raise ValueError(f"adaptive_lo.lo_min ({self.adaptive_lo.lo_min}) must be below trust_hi ({self.trust_hi})")
        return self


# ---------------------------------------------------------------- converge
class ConvergeConfig(Strict):
    accurate_ratio: float = Field(0.95, gt=0, le=1, description="Converged when this fraction of explored frames is accurate ...")
    patience: int = Field(2, ge=1, description="... for this many consecutive iterations of the last stage.")
    max_iterations: int = Field(10, ge=1, description="Hard cap on iterations.")


class EvaluateConfig(Strict):
    frames: int = Field(0, ge=0, description="After the loop, label this many fresh MD frames and report the final ensemble's errors on them (0: skip).")
    temperature: Optional[float] = Field(None, gt=0, description="Temperature (K) of the test MD; default: the highest of the last stage.")
    steps: int = Field(400, ge=1, description="MD steps of the test walker; the frames are spread evenly over them.")


TrainSection = plugin_section("potential", "deepmd")  # deepmd, mace or an installed potential plugin
LabelSection = plugin_section("labeler", "emt")  # emt, pyscf, cp2k or an installed labeler plugin


class Workflow(Strict):
    """A whole workflow.yaml."""

    name: str = Field("elt-run", description="Name of the campaign.")
    workdir: Optional[Path] = Field(None, description="Run directory; default: NAME next to the workflow file (or --workdir).")
    seed: int = Field(0, description="Base seed for every random choice of the run.")
    system: SystemConfig = Field(description="Start structures and initial data.")
    train: TrainSection = Field(default_factory=DeepMDTrain, description="Ensemble training: a mapping with the potential's kind (deepmd, the default; mace; or an installed potential plugin) and its settings.")
    explore: ExploreConfig = Field(default_factory=ExploreConfig, description="Exploration stages.")
    select: SelectConfig = Field(default_factory=SelectConfig, description="Trust levels and label budget.")
    label: LabelSection = Field(default_factory=EMTLabel, description="Reference method: a mapping with its kind (emt, pyscf, cp2k, or an installed labeler plugin) and that method's settings.")
    converge: ConvergeConfig = Field(default_factory=ConvergeConfig, description="Stopping rule.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Final test of the trained ensemble on fresh labeled frames.")
    cluster: Union[str, dict, None] = Field(None, description="Cluster profile: a name (local, slurm), a path to a YAML, or an inline mapping.")

    # where the file came from, for relative paths; not part of the YAML
    base_dir: Path = Field(Path("."), exclude=True, description="Directory of the workflow file (set by the loader).")

    def resolve(self, p: Path) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def section_hash(self, *names: str) -> str:
        """A short hash of the given sections (content-derived ids depend on it)."""
        data = {n: ident(getattr(self, n)) for n in names}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_workflow(data: Any, source: str = "workflow", base_dir: Path | None = None) -> Workflow:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (system, train, explore, ...), "
                          f"received {type(data).__name__}",
                          hint="start from workflows/quickstart.yaml")
    data = dict(data)
    if base_dir is not None:
        data["base_dir"] = base_dir
    try:
        return Workflow.model_validate(data)
    except ValidationError as e:
        raise format_validation_error(e, source) from None


def load_workflow(path: str | Path) -> Workflow:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"workflow file {str(path)!r} not found",
                          hint="give the path to a workflow YAML, e.g. workflows/quickstart.yaml")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        from elt.config.cluster import yaml_error

        raise yaml_error(path, text, e) from None
    return parse_workflow(data, str(path), base_dir=path.resolve().parent)

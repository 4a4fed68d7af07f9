"""The ELT loop: train → explore → select → label → append, until converged.

The driver is the only writer of the run state. Every task has a content-derived id, so running
``elt run`` again on the same run directory reuses all finished work and dispatches only what is
missing (see :mod:`elt.engine.state`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from elt import registry
from elt.config.cluster import load_profile
from elt.data.frames import (FRAME_ID, PICK, atomic_write_bytes, ITERATION, SOURCE, STEP, chemical_elements, frame_hash,
                             fully_periodic, read_frames, write_frames)
from elt.data.io import read_initial_data
from elt.data.layout import RunLayout, recorded_origin
from elt.data.structures import perturbed_copies, start_structures
from elt.dispatch.base import open_cluster
from elt.engine import tasks
from elt.engine.dataset import DataSet, check_recorded_files, data_file_problem, file_digest
from elt.engine.evaluation import ensemble_errors, fresh_test_frames
from elt.engine.ids import content_id, derive_seed
from elt.engine.plan import Position, advance, is_stuck, replay, stage_threshold
from elt.engine.runner import Outcome, Reporter, TaskRunner, TaskSpec
from elt.engine.selection import Pick, calibration_picks, choose_labels, gather, iteration_levels, stream_picks
from elt.engine.state import RunLock, RunState
from elt.errors import CalculationError, CampaignError, ConfigError, SetupError, StateError
from elt.potentials import write_manifest
from elt.records import ExploreResult, IterationRecord, SelectionLevels, TrainResult, WalkerSpec
from elt.sampling.batching import split_batches

log = logging.getLogger(__name__)

# sections whose change invalidates finished work; explore stages are checked one by one
FROZEN_SECTIONS = ("system", "train", "select", "label", "seed")


@dataclass
class RunSummary:
    run_dir: str
    status: str
    iterations: int
    dataset_size: int
    final_members: list[str] = field(default_factory=list)
    final_metrics: dict = field(default_factory=dict)
    test: Optional[dict] = None
    dispatched: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def run_dir_of(wf, workdir: Optional[Path] = None) -> Path:
    if workdir is not None:
        return Path(workdir).resolve()
    if wf.workdir is not None:
        return wf.resolve(wf.workdir).resolve()
    return (wf.base_dir / wf.name).resolve()


def fingerprint(wf) -> dict:
    fp = {name: wf.section_hash(name) for name in FROZEN_SECTIONS}
    fp["stages"] = [content_id(s) for s in wf.explore.stages]
    return fp


def check_compatible(state: RunState, wf, n_done: int, records: list[dict]) -> None:
    """Refuse a changed workflow when the change would invalidate finished work."""
    new = fingerprint(wf)
    old_text = state.get_meta("fingerprint")
    if old_text is None:
        state.set_meta("fingerprint", json.dumps(new))
        return
    old = json.loads(old_text)
    # before the first iteration finishes only the initial labels exist: they depend on these
    sections = FROZEN_SECTIONS if n_done else ("system", "label", "seed")
    changed = [k for k in sections if old.get(k) != new[k]]
    used_stages = sorted({r["stage"] for r in records})
    for i in used_stages:
        if i >= len(new["stages"]) or i >= len(old["stages"]) or old["stages"][i] != new["stages"][i]:
            changed.append(f"explore.stages[{i}]")
    if changed:
        raise StateError(
            f"the workflow changed in a way that invalidates finished work in {state.run_dir}: "
            f"{', '.join(changed)} differ from the run's ({n_done} finished iterations)",
            hint="undo the change to continue this run (a default that changed in a newer elt counts as a change: "
                 "write the old value into the workflow); or start a fresh run with another --workdir; "
                 "or branch: `elt run WORKFLOW --workdir NEW --from-run OLD --from-iteration N` "
                 "reuses the labeled data of OLD's first N iterations. Allowed changes: "
                 "converge.*, appended stages, the cluster profile, evaluate.*")
    # allowed changes (stages appended, converge) are remembered
    state.set_meta("fingerprint", json.dumps(new))


class Campaign:
    """A campaign of one workflow in one run directory: the checks before anything runs (start
    structures, elements, labeler, metadynamics atoms: all in the constructor) and :meth:`run`,
    which opens the state and the cluster and runs or resumes the loop (:class:`_Run`)."""

    def __init__(self, wf, run_dir: Path, profile=None, reporter: Optional[Reporter] = None):
        self.wf = wf
        self.run_dir = Path(run_dir)
        self.profile = profile if profile is not None else load_profile(wf.cluster, wf.base_dir)
        self.reporter = reporter or Reporter()
        self.layout = RunLayout(self.run_dir)
        self.runner: Optional[TaskRunner] = None  # the last run's (its timeline, dispatched count)
        self.structures = start_structures(wf.system, wf.base_dir)
        self.imported = [a for spec in wf.system.initial_data
                         for a in read_initial_data(spec, wf.base_dir, wf.system.elements)]
        self.elements = self._elements()
        self.label_cfg = wf.label.with_base_dir(wf.base_dir)  # paths relative to the workflow file
        self._preflight()

    def _elements(self) -> list[str]:
        wf = self.wf
        found = chemical_elements(self.structures + self.imported)
        if not wf.system.elements:
            return found
        missing = sorted(set(found) - set(wf.system.elements))
        if missing:
            raise ConfigError(f"system.elements lists {wf.system.elements} but the structures/data contain {missing}",
                              hint=f"add {missing} to system.elements, or leave elements out to take them from the structures")
        return sorted(wf.system.elements)

    def _preflight(self) -> None:
        """Refuse what cannot run before anything is dispatched: a labeler that cannot run here,
        an unknown potential, metadynamics atoms outside the start structures."""
        wf = self.wf
        label_exec = open_cluster(self.profile, self.run_dir).exec_settings("label")
        kinds = {fully_periodic(a) for a in self.structures}
        periodic = kinds.pop() if len(kinds) == 1 else None
        labeler_cls = registry.get("labeler", wf.label.kind)
        problems = labeler_cls(self.label_cfg, label_exec).check(self.elements, periodic)
        if problems:
            raise SetupError(f"the {wf.label.kind} labeler cannot run here:\n  - " + "\n  - ".join(problems))
        registry.get("potential", wf.train.kind)
        problems = [p for st in wf.explore.stages if st.metad is not None
                    for a in self.structures for p in st.metad.check_atoms(len(a))]
        if problems:
            raise ConfigError("explore.stages[].metad does not fit the start structures:",
                              problems=sorted(set(problems)),
                              hint="atom indices are 0-based positions in each start structure")

    def plan_summary(self) -> list[str]:
        """What would be dispatched in the next iteration (dry run), as lines of text."""
        wf = self.wf
        st = wf.explore.stages[0]
        n_walk = len(self.structures) * len(st.temperatures) * len(st.pressures or [None]) * st.walkers_per_structure
        return [
            f"run directory: {self.run_dir}",
            f"elements: {', '.join(self.elements)}; {len(self.structures)} start structure(s); "
            f"{len(self.imported)} imported labeled frames; {max(0, wf.system.n_initial - len(self.imported))} initial frames to label",
            f"per iteration: {wf.train.ensemble_size} train tasks, {n_walk} explore tasks (stage 0), "
            f"at most {wf.select.max_candidates} label tasks ({wf.label.kind})",
            f"stages: {len(wf.explore.stages)}; at most {wf.converge.max_iterations} iterations",
        ]

    def run(self) -> RunSummary:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.run_dir), RunState(self.run_dir) as state:
            records = state.iterations()
            check_compatible(state, self.wf, len(records), records)
            with open_cluster(self.profile, self.run_dir) as cluster:
                self.reporter.message(f"cluster: {cluster.describe()}")
                self.runner = TaskRunner(state, cluster, self.reporter)
                return _Run(self, state, cluster, self.runner, records).loop()


@dataclass
class Walk:
    """One walker's outcome, its typed result parsed once (None when the walker failed)."""

    outcome: Outcome
    result: Optional[ExploreResult]

    @classmethod
    def of(cls, o: Outcome) -> "Walk":
        return cls(o, ExploreResult.model_validate(o.result) if o.status == "done" else None)

    @property
    def name(self) -> str:
        return self.outcome.spec.name

    @property
    def error(self) -> Optional[str]:
        return None if self.result is not None else (self.outcome.result or {}).get("message") or self.outcome.error


class _Run:
    """One ``elt run`` of a campaign: the state, the cluster, the task runner, the iterations
    recorded before this run and the data set, all given up front; the loop, its phases and the
    iteration record."""

    def __init__(self, camp: Campaign, state: RunState, cluster, runner: TaskRunner, records: list[dict]):
        self.wf, self.reporter = camp.wf, camp.reporter
        self.records = records
        # paths are recorded (and task ids derived) as they were where the run was made; a moved or
        # copied run reads its files here (RunLayout.here) and derives the same ids (as_recorded)
        self.layout = RunLayout(camp.run_dir, recorded_origin(records, [] if records else state.tasks()))
        self.structures, self.imported, self.elements = camp.structures, camp.imported, camp.elements
        self.label_cfg, self.profile = camp.label_cfg, camp.profile
        self.run_dir = camp.run_dir
        self.state, self.cluster, self.runner = state, cluster, runner
        self.data = DataSet()

    # ------------------------------------------------------------------ data
    def _initial_data(self) -> list[str]:
        wf = self.wf
        files = []
        recorded = json.loads(self.state.get_meta("initial_files") or "{}")  # name -> sha256
        whole = {}  # name -> sha256 of the files found whole (not written again below)
        for p in (self.layout.imported_data, self.layout.initial_data):
            if p.exists():
                whole[p.name] = file_digest(p)
                if p.name in recorded and whole[p.name] != recorded[p.name]:
                    self.reporter.message(f"{p} differs from what the run wrote: rebuilding it")
                    p.unlink()
                    del whole[p.name]
        if self.imported:
            p = self.layout.imported_data
            frames = []
            for a in self.imported:
                a.info.update({FRAME_ID: frame_hash(a), ITERATION: -1, SOURCE: "imported"})
                frames.append(a)
            if not p.exists():
                write_frames(p, frames)
            files.append(str(p))
        n = max(0, wf.system.n_initial - len(self.imported))
        if n:
            p = self.layout.initial_data
            if not p.exists():
                self._label_initial(p, n)
            files.append(str(p))
        for f in map(Path, files):
            sha = whole.get(f.name) or file_digest(f)
            if recorded.get(f.name, sha) != sha:
                raise StateError(f"{f} was rebuilt but differs from the file the run's finished work used",
                                 hint="restore it from a backup, or start a fresh run with another --workdir")
            recorded[f.name] = sha
        self.state.set_meta("initial_files", json.dumps(recorded))
        if not files:
            raise ConfigError("no initial data: system.initial_data is empty and system.n_initial is 0",
                              hint="set system.n_initial (e.g. 8) or give initial_data")
        return files

    def _label_initial(self, path: Path, n: int) -> None:
        """Label ``n`` randomly perturbed copies of the start structures into ``path``."""
        wf = self.wf
        seed = derive_seed(wf.seed, "init")
        frames = perturbed_copies(self.structures, n, wf.system.perturb_positions, wf.system.perturb_cell, seed)
        for a in frames:
            a.info.update({FRAME_ID: frame_hash(a), ITERATION: -1, SOURCE: "init-perturbed"})
        labeled, failed = self._label(frames, -1, "label initial frames")
        if not labeled:
            raise CampaignError("every initial frame failed to label:\n  - " + "\n  - ".join(
                f"{f['reason']}: {f['message']}" for f in failed[:10]),
                hint="check the label section (and the task directories under the run's label/ folder)")
        write_frames(path, labeled)

    def _restore_data_file(self, r: dict) -> None:
        """Rebuild a damaged or deleted ``data/iter_NNN.extxyz`` from its per-label results (the
        same bytes: the same frames written the same way); refuse when they are not all there."""
        p = self.layout.data_file(r["data_file"])
        problem = data_file_problem(p, r.get("labels_ok"), r.get("data_sha256"))
        if problem is None:
            return
        files = [self.layout.label_dir(t) / "labeled.extxyz" for t in r.get("label_tasks") or []]
        if "label_tasks" not in r or not all(f.exists() for f in files):
            check_recorded_files(self.run_dir, [r])  # raises, naming the file and what to do
        out = self.layout.iteration_data(r["iteration"])
        frames = [tasks.load_labeled({"file": str(f)}) for f in files]
        write_frames(out, frames)
        if data_file_problem(out, r.get("labels_ok"), r.get("data_sha256")):
            raise StateError(f"{out} {problem}, and rebuilding it from the per-label results gave another file",
                             hint="restore the run directory from a backup, or branch a new run from the "
                                  "iterations before this one (--from-run/--from-iteration)")
        self.reporter.message(f"rebuilt {out.name} ({problem}) from {len(frames)} per-label results in label/")

    def _dataset_hash(self) -> str:
        h = hashlib.sha256()
        for f in self.data.files:
            h.update(Path(f).read_bytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ phases
    def _train(self, it: int, init: Optional[list[str]], phase: str) -> tuple[list[str], dict]:
        wf = self.wf
        dhash = self._dataset_hash()
        specs = []
        for m in range(wf.train.ensemble_size):
            init_path = init[m] if (init and wf.train.warm_start) else None
            tid = content_id("train", wf.train, self.elements, dhash, m, wf.seed, init_path)
            job = tasks.TrainJob(list(self.data.files), wf.train, self.elements, m, derive_seed(wf.seed, "train", it, m),
                                 str(self.layout.here(init_path)) if init_path else None)
            specs.append(TaskSpec(tid, "train", it, tasks.train_task, self._task_dir(it, "train", f"member{m}", tid),
                                  job, f"member {m}"))
        outs = self.runner.run(specs, phase)
        bad = [o for o in outs if o.status != "done"]
        if bad:
            o = bad[0]
            raise CalculationError(f"training {o.spec.name} of iteration {it} failed: {(o.result or {}).get('message') or o.error}",
                                   hint=f"see {o.spec.task_dir}; rerun `elt run` to retry (finished members are kept)")
        done = [TrainResult.model_validate(o.result) for o in outs]
        members = [self.layout.as_recorded(self.layout.here(r.checkpoint)) for r in done]
        return members, _mean_metrics([r.metrics for r in done])

    def _walkers(self, it: int, stage_index: int) -> list[tuple[WalkerSpec, object]]:
        wf = self.wf
        st = wf.explore.stages[stage_index]
        out = []
        for si, a in enumerate(self.structures):
            for T in st.temperatures:
                for P in (st.pressures or [None]):
                    for w in range(st.walkers_per_structure):
                        wid = f"s{si}-T{T:g}" + (f"-P{P:g}" if P is not None else "") + f"-w{w}"
                        seed = derive_seed(wf.seed, "walker", it, wid)
                        out.append((WalkerSpec(id=wid, temperature=T, pressure=P, seed=seed, iteration=it), a))
        return out

    def _explore_specs(self, it: int, stage_index: int, members: list[str], sel: SelectionLevels) -> list[TaskSpec]:
        wf = self.wf
        st = wf.explore.stages[stage_index]
        walkers = self._walkers(it, stage_index)

        def job(ws, starts):
            return self._explore_job(ws, starts, members, st, sel)

        if not getattr(registry.get("explorer", st.explorer.kind), "batched", False):
            return [TaskSpec(tid, "explore", it, tasks.explore_task, self._task_dir(it, "explore", w.id, tid),
                             job([w], [a]), w.id)
                    for w, a in walkers  # one walker per task
                    for tid in [content_id("explore", st, sel, members, frame_hash(a), w)]]
        # walkers grouped into tasks, each task one batched MD
        groups = split_batches([len(a) for _, a in walkers], workers=self.cluster.worker_slots("explore"),
                               max_atoms=st.explorer.max_atoms,
                               max_walkers=self.profile.walkers_per_task or st.explorer.max_walkers)
        specs = []
        for k, g in enumerate(groups):
            ws, starts = [walkers[i][0] for i in g], [walkers[i][1] for i in g]
            tid = content_id("explore-batch", st, sel, members, [frame_hash(a) for a in starts], ws)
            specs.append(TaskSpec(tid, "explore", it, tasks.explore_batch_task,
                                  self._task_dir(it, "explore", f"batch{k}", tid), job(ws, starts), f"batch{k}"))
        return specs

    def _explore_job(self, walkers: list, starts: list, members: list[str], stage, sel) -> tasks.ExploreJob:
        """The job of walkers driven by ``members`` (as recorded; the job opens them here)."""
        return tasks.ExploreJob(walkers, starts, [str(self.layout.here(m)) for m in members], self.wf.train.kind,
                                stage, sel, self.wf.explore.threads)

    def _walk(self, o: Outcome) -> Walk:
        """A walker's outcome with its result's files found here."""
        w = Walk.of(o)
        if w.result is not None:
            here = self.layout.here
            w.result = w.result.model_copy(update={
                "candidates_file": str(here(w.result.candidates_file)),
                "model_devi_file": str(here(w.result.model_devi_file)),
                "features_file": str(here(w.result.features_file)) if w.result.features_file else None})
        return w

    def _explore(self, it: int, stage_index: int, members: list[str], sel: SelectionLevels,
                 follow=None) -> tuple[list[Walk], list[Outcome]]:
        """The iteration's walkers (in walker order) and the outcomes of the tasks ``follow`` added
        (the streamed labels)."""
        st = self.wf.explore.stages[stage_index]
        specs = self._explore_specs(it, stage_index, members, sel)
        phase = f"iteration {it}: explore (stage {st.name or stage_index})" + (" + label" if follow else "")
        if follow is not None:
            inner = follow
            follow = lambda o: [s for w in _per_walker(o) for s in inner(self._walk(w))]  # noqa: E731
        outs = self.runner.run(specs, phase, follow)
        walks = [self._walk(w) for o in outs if o.spec.kind == "explore" for w in _per_walker(o)]
        return walks, [o for o in outs if o.spec.kind != "explore"]

    def _pool_features(self, walks: list[Walk], pool: list[Pick]) -> np.ndarray:
        """Descriptor vectors of the pooled candidates (stored by the walkers next to their frames)."""
        files: dict[int, np.ndarray] = {}
        rows = []
        for p in pool:
            if p.walker not in files:
                files[p.walker] = np.load(walks[p.walker].result.features_file)
            rows.append(files[p.walker][p.candidate.index])
        return np.asarray(rows).reshape(len(rows), -1)

    def _label_ids(self, frames: list) -> list[str]:
        """The label task id of each frame: the method (with its input files' text) and the frame."""
        inputs = [Path(f).read_text() for f in self.label_cfg.input_files()]
        template_hash = content_id(*inputs) if inputs else None
        return [content_id("label", self.wf.label, template_hash, a.info.get(FRAME_ID) or frame_hash(a)) for a in frames]

    def _label_specs(self, frames: list, it: int) -> list[TaskSpec]:
        exec_settings = self.cluster.exec_settings("label")
        return [TaskSpec(tid, "label", it, tasks.label_task, self.layout.label_dir(tid),
                         tasks.LabelJob(a, self.label_cfg, exec_settings, self.wf.label.retries),
                         a.info.get(FRAME_ID) or frame_hash(a))
                for a, tid in zip(frames, self._label_ids(frames))]

    def _label_results(self, outs: list[Outcome]) -> tuple[list, list[dict]]:
        labeled, failed = [], []
        for o in outs:
            if o.status == "done":
                labeled.append(tasks.load_labeled({"file": str(self.layout.here(o.result["file"]))}))
            else:
                r = o.result or {}
                failed.append({"task": o.spec.id, "frame_id": o.spec.name, "reason": r.get("reason", "error"),
                               "message": r.get("message") or o.error, "physics": bool(r.get("physics")),
                               "workdir": str(o.spec.task_dir)})
        return labeled, failed

    def _label(self, frames: list, it: int, phase: str) -> tuple[list, list[dict]]:
        return self._label_results(self.runner.run(self._label_specs(frames, it), phase))

    def _stream_labels(self, it: int, n_walkers: int):
        """The follow-up of a finished walker when select.stream is on: label its share of the
        candidates at once (:func:`elt.engine.selection.stream_picks`)."""
        seen: set = set()

        def follow(w: Walk) -> list[TaskSpec]:
            idx = stream_picks(self.wf, w.result, w.name, it, n_walkers)
            if not idx:
                return []
            frames = read_frames(Path(w.result.candidates_file))
            return self._label_specs(self.data.fresh([frames[w.result.candidates[i].index] for i in idx], seen), it)

        return follow

    def _task_dir(self, it: int, kind: str, name: str, tid: str) -> Path:
        return self.layout.task_dir(it, kind, name, tid)

    # ------------------------------------------------------------------ the loop
    def loop(self) -> RunSummary:
        wf, records = self.wf, self.records
        done = self.state.count_tasks("done")  # before this run dispatches anything
        if any(done.values()):
            self.reporter.message("resuming: " + ", ".join(f"{n} {k}" for k, n in sorted(done.items()) if n)
                                  + " task(s) finished before are reused, not run again")
        files = self._initial_data()
        for r in records:
            self._restore_data_file(r)
            files.append(str(self.layout.data_file(r["data_file"])))
        for f in files:
            self.data.add(Path(f), read_frames(Path(f)))
        pos = replay(wf, records)
        members = records[-1]["members"] if records else None
        if records:
            st = wf.explore.stages[min(pos.stage, len(wf.explore.stages) - 1)]
            self.reporter.message(f"resuming after iteration {records[-1]['iteration']} "
                                  f"({len(records)} finished; next: stage {st.name or pos.stage})")
        last = records[-1] if records else None
        if pos.done is None:  # a finished run given more iterations or stages goes on: not finished now
            self.state.drop_meta("ending", "final", "test")
        while pos.done is None:
            rec = last = self._iteration(pos, members).stored()
            self.state.record_iteration(pos.iteration, rec)
            members = rec["members"]
            self.reporter.iteration_summary(rec)
            pos = advance(wf, pos, rec)
        # the loop has ended: `elt status` and `elt report` name the final training and test from here
        self.state.set_meta("ending", json.dumps({"status": pos.done}))
        # the final ensemble, trained on everything
        final, metrics = self._train(pos.iteration, members, "final training")
        final = self._publish_model(final)
        promised = ((last or {}).get("levels") or {}).get("target")  # what 'accurate' meant at the end
        test = self._evaluate(pos.iteration, final, promised) if wf.evaluate.frames else None
        if test is not None:
            self.state.set_meta("test", json.dumps(test))
        # the run is finished once its final ensemble is tested (status and report say so from here)
        self.state.set_meta("final", json.dumps({"members": final, "metrics": metrics, "status": pos.done}))
        return RunSummary(str(self.run_dir), pos.done, pos.iteration, self.data.size,
                          [str(self.layout.here(m)) for m in final], metrics, test,
                          self.runner.dispatched)

    def _publish_model(self, members: list[str]) -> list[str]:
        """Copy the final members to RUN_DIR/model/ under their names, with the manifest of their
        kind (what elt.load_potential takes)."""
        out = []
        for m in members:
            dst = self.layout.model_member(Path(m).name)
            atomic_write_bytes(dst, self.layout.here(m).read_bytes())
            out.append(self.layout.as_recorded(dst))
        write_manifest(self.layout.model_dir, self.wf.train.kind, out)
        return out

    def _frames_of(self, walks: list[Walk], picks: list[Pick]) -> list:
        """The frames of ``picks`` from the walkers' candidates files (each read once), fresh ones only."""
        cache: dict[int, list] = {}
        out = []
        for p in picks:
            if p.walker not in cache:
                cache[p.walker] = read_frames(Path(walks[p.walker].result.candidates_file))
            out.append(cache[p.walker][p.candidate.index])
        return self.data.fresh(out)

    def _check_failed_fraction(self, n: int, failed: list[dict], it: int) -> None:
        wf = self.wf
        if n and len(failed) > wf.label.max_failed_fraction * n:
            raise CampaignError(
                f"{len(failed)} of {n} labels of iteration {it} failed "
                f"(more than label.max_failed_fraction = {wf.label.max_failed_fraction}):\n  - "
                + "\n  - ".join(f"{f['reason']}: {f['message']} ({f['workdir']})" for f in failed[:20]),
                hint="fix the label settings (see the task folders), or raise label.max_failed_fraction; "
                     "rerun `elt run` to continue: finished labels are kept")

    def _explore_and_label(self, it: int, si: int, members: list[str], levels: SelectionLevels):
        """Explore, choose and label (streamed or after every walker). Returns the walkers, what
        they found, the levels in force, the frames sent to labeling, the labels, and the seconds
        of each phase."""
        wf = self.wf
        t = [time.perf_counter()]
        if wf.select.stream:
            walks, streamed = self._explore(it, si, members, levels,
                                            self._stream_labels(it, len(self._walkers(it, si))))
            rank = {w.name: i for i, w in enumerate(walks)}  # walker order, not completion order
            streamed.sort(key=lambda o: (rank[o.spec.job.atoms.info[SOURCE]], o.spec.job.atoms.info[STEP]))
        else:
            walks, streamed = self._explore(it, si, members, levels)
        t.append(time.perf_counter())
        g = gather([w.result for w in walks], [w.name for w in walks], [w.error for w in walks])
        if g.failures and len(g.failures) == len(walks):
            raise CalculationError(f"every exploration walker of iteration {it} failed: {g.failures[0]['message']}",
                                   hint="see the explore/ task folders of this iteration; rerun `elt run` to retry")
        lv, pool = levels, g.pool
        if wf.select.stream:  # labeled while exploring, in walker order
            t.append(time.perf_counter())
            labeled, failed = self._label_results(streamed)
            frames = [o.spec.job.atoms for o in streamed]
        else:
            feats = self._pool_features(walks, g.pool) if wf.select.strategy == "fps" and g.pool else None
            chosen, pool, lv = choose_labels(wf, g, levels, it, feats)
            frames = self._frames_of(walks, chosen)
            t.append(time.perf_counter())
            labeled, failed = self._label(frames, it, f"iteration {it}: label")
        picks = calibration_picks(wf, [w.result for w in walks], it,
                                  {a.info.get(FRAME_ID) for a in frames} | self.data.known)
        calib = self._frames_of(walks, picks)
        for a in calib:
            a.info[PICK] = "calibration"  # reports tell the unrestricted sample from the candidates
        if calib:  # an unrestricted sample of the explored frames, labeled to calibrate the deviation
            more, more_failed = self._label(calib, it, f"iteration {it}: label (calibration)")
            labeled, failed, frames = labeled + more, failed + more_failed, frames + calib
        t.append(time.perf_counter())
        seconds = {"explore": t[1] - t[0], "select": t[2] - t[1], "label": t[3] - t[2]}
        return walks, g, len(pool), lv, frames, calib, labeled, failed, seconds

    def _iteration(self, pos: Position, members_prev) -> IterationRecord:
        wf = self.wf
        it, si = pos.iteration, pos.stage
        st = wf.explore.stages[si]
        t0 = time.perf_counter()
        members, metrics = self._train(it, members_prev, f"iteration {it}: train")
        levels, derived = iteration_levels(wf, si, metrics, self.data.held_out)
        t1 = time.perf_counter()
        walks, g, n_pool, lv, frames, calib, labeled, failed, seconds = self._explore_and_label(it, si, members, levels)
        self._check_failed_fraction(len(frames), failed, it)
        data_file = self.layout.iteration_data(it)
        write_frames(data_file, labeled)
        self.data.add(data_file, labeled)
        counts = g.counts
        total = sum(counts.values())
        return IterationRecord(
            iteration=it, stage=si, stage_name=st.name or f"stage {si}",
            temperatures=st.temperatures, pressures=st.pressures,
            trust_lo=lv.lo, trust_hi=lv.hi, energy_trust_lo=lv.elo, energy_trust_hi=lv.ehi,
            levels=derived, calibration_labels=len(calib), accurate_threshold=stage_threshold(wf, si),
            # auto levels are trusted once a calibration of the deviation exists (plan.advance)
            calibrated=derived is None or derived.get("scale") is not None,
            walkers=len(walks), walker_failures=g.failures, frames=total, **counts,
            accurate_ratio=counts["accurate"] / total if total else 0.0,
            candidate_ratio=counts["candidate"] / total if total else 0.0,
            failed_ratio=counts["failed"] / total if total else 0.0,
            stop_reasons=g.stop_reasons, candidates=n_pool, selected=len(frames),
            labels_ok=len(labeled), labels_failed=len(failed), failures=failed,
            dataset_size=self.data.size, train=metrics, members=members,
            explore_tasks=[str(w.outcome.spec.task_dir.relative_to(self.layout.explore_dir(it, ""))) for w in walks],
            data_file=str(data_file), data_sha256=file_digest(data_file),
            label_tasks=self._label_ids(labeled),  # what rebuilds the data file (_restore_data_file)
            stuck=is_stuck(counts, n_pool, stage_threshold(wf, si)),
            seconds={"train": t1 - t0, **seconds},
            finished=time.time())

    def _evaluate(self, it: int, members: list[str], promised: Optional[float]) -> dict:
        """Label fresh MD frames of the final ensemble and report its errors on them."""
        wf = self.wf
        ev = wf.evaluate
        st = wf.explore.stages[-1]
        T = ev.temperature or max(st.temperatures)
        walker = WalkerSpec(id="test", temperature=T, pressure=(st.pressures or [None])[0],
                            seed=derive_seed(wf.seed, "test"), iteration=it)
        test_stage = st.model_copy(update={"steps": ev.steps, "record_every": max(1, ev.steps // ev.frames),
                                           "stop_at_failed": False, "bias": None, "metad": None})
        # every recorded frame is a candidate: those already in the data set are left out below
        sel = SelectionLevels(lo=0.0, hi=float("inf"), strategy="random")
        a = self.structures[0]
        tid = content_id("evaluate", test_stage, members, frame_hash(a), walker)
        job = self._explore_job([walker], [a], members, test_stage, sel)
        [o] = self.runner.run([TaskSpec(tid, "explore", it, tasks.explore_task,
                                        self._task_dir(it, "evaluate", "md", tid), job, "test")], "final test: MD")
        w = self._walk(o)
        if w.result is None:
            return {"error": w.error}
        frames = fresh_test_frames(read_frames(Path(w.result.candidates_file)), self.data.known, ev.frames)
        labeled, failed = self._label(frames, it, "final test: label")
        if not labeled:
            return {"error": "every test label failed", "failures": failed}
        pot = registry.get("potential", wf.train.kind).load_ensemble([self.layout.here(m) for m in members])
        out = {**ensemble_errors(pot, labeled), "temperature": T, "labels_failed": len(failed)}
        if promised is not None:
            out["promised_max_force_error"] = promised
        return out


def _per_walker(o: Outcome) -> list[Outcome]:
    """The walkers of an exploration task's outcome, one outcome each (a batch task ran several:
    each gets its own folder ``TASK_DIR/WALKER``, name and result); a one-walker task as it is."""
    res = o.result or {}
    if "walkers" not in res:
        return [o]
    out = []
    for r in res["walkers"]:
        spec = dataclasses.replace(o.spec, name=r["walker"], task_dir=o.spec.task_dir / r["walker"])
        out.append(dataclasses.replace(o, spec=spec, result={**r, "seconds": res.get("seconds", 0.0)}))
    return out


def _mean_metrics(ms: list[dict]) -> dict:
    out: dict = {}
    for split in ("train", "valid"):
        vals = [m.get(split) for m in ms if m.get(split)]
        if vals:
            out[split] = {k: float(np.mean([v[k] for v in vals if k in v])) for k in ("rmse_e", "rmse_f") if any(k in v for v in vals)}
    out["seconds"] = float(sum(m.get("seconds", 0.0) for m in ms))
    out["stop_reasons"] = sorted({m["stop_reason"] for m in ms if m.get("stop_reason")})
    out["warnings"] = sorted({f"member {i}: {w}" for i, m in enumerate(ms) for w in m.get("warnings") or []})
    return out


def run_workflow(wf, workdir: Optional[Path] = None, profile=None, reporter: Optional[Reporter] = None) -> RunSummary:
    """Run (or resume) the campaign of ``wf`` in its run directory."""
    return Campaign(wf, run_dir_of(wf, workdir), profile, reporter).run()

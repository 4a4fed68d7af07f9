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
                             read_frames, write_frames)
from elt.data.io import read_initial_data
from elt.data.layout import RunLayout
from elt.data.structures import perturbed_copies, start_structures
from elt.dispatch.base import open_cluster
from elt.engine import tasks
from elt.engine.dataset import check_recorded_files, data_file_problem, file_digest
from elt.engine.evaluation import ensemble_errors, fresh_test_frames
from elt.engine.ids import content_id, derive_seed
from elt.engine.plan import Position, advance, is_stuck, replay, stage_threshold
from elt.engine.runner import Outcome, Reporter, TaskRunner, TaskSpec
from elt.engine.state import RunLock, RunState
from elt.errors import CalculationError, CampaignError, ConfigError, SetupError, StateError
from elt.potentials import write_manifest
from elt.records import ExploreResult, SelectionLevels, TrainResult, WalkerSpec
from elt.sampling.batching import split_batches
from elt.sampling.levels import auto_levels, calibrate, held_out_pairs
from elt.sampling.select import adaptive_lo, cap_per_group, choose

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
    def __init__(self, wf, run_dir: Path, profile=None, reporter: Optional[Reporter] = None):
        self.wf = wf
        self.run_dir = Path(run_dir)
        self.profile = profile if profile is not None else load_profile(wf.cluster, wf.base_dir)
        self.reporter = reporter or Reporter()
        self.layout = RunLayout(self.run_dir)

    # ------------------------------------------------------------------ setup
    def prepare(self):
        wf = self.wf
        self.structures = start_structures(wf.system, wf.base_dir)
        self.imported = []
        for spec in wf.system.initial_data:
            self.imported.extend(read_initial_data(spec, wf.base_dir, wf.system.elements))
        found = chemical_elements(self.structures + self.imported)
        if wf.system.elements:
            missing = sorted(set(found) - set(wf.system.elements))
            if missing:
                raise ConfigError(f"system.elements lists {wf.system.elements} but the structures/data contain {missing}",
                                  hint=f"add {missing} to system.elements, or leave elements out to take them from the structures")
            self.elements = sorted(wf.system.elements)
        else:
            self.elements = found
        self.label_cfg = wf.label.with_base_dir(wf.base_dir)  # paths relative to the workflow file
        self.label_exec = open_cluster(self.profile, self.run_dir).exec_settings("label")
        kinds = {bool(a.pbc.all()) for a in self.structures}
        periodic = kinds.pop() if len(kinds) == 1 else None
        labeler_cls = registry.get("labeler", wf.label.kind)
        problems = labeler_cls(self.label_cfg, self.label_exec).check(self.elements, periodic)
        if problems:
            raise SetupError(f"the {wf.label.kind} labeler cannot run here:\n  - " + "\n  - ".join(problems))
        registry.get("potential", wf.train.kind)
        problems = [p for i, st in enumerate(wf.explore.stages) if st.metad is not None
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

    # ------------------------------------------------------------------ data
    def _initial_data(self, runner: TaskRunner) -> list[str]:
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
                seed = derive_seed(wf.seed, "init")
                frames = perturbed_copies(self.structures, n, wf.system.perturb_positions, wf.system.perturb_cell, seed)
                for a in frames:
                    a.info.update({FRAME_ID: frame_hash(a), ITERATION: -1, SOURCE: "init-perturbed"})
                labeled, failed = self._label(runner, frames, -1, "label initial frames")
                if not labeled:
                    raise CampaignError("every initial frame failed to label:\n  - " + "\n  - ".join(
                        f"{f['reason']}: {f['message']}" for f in failed[:10]),
                        hint="check the label section (and the task directories under the run's label/ folder)")
                write_frames(p, labeled)
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

    def _hold_out(self, labeled: list) -> None:
        """Add the (max force deviation, true max force error) pairs of newly labeled candidates:
        the ensemble that explored them was not trained on them (the calibration of auto levels)."""
        d, e = held_out_pairs(labeled)
        self.held_out = (np.concatenate([self.held_out[0], d]), np.concatenate([self.held_out[1], e]))

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

    def _dataset_hash(self, files: list[str]) -> str:
        h = hashlib.sha256()
        for f in files:
            h.update(Path(f).read_bytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ phases
    def _train(self, runner: TaskRunner, it: int, files: list[str], init: Optional[list[str]], phase: str) -> tuple[list[str], dict]:
        wf = self.wf
        dhash = self._dataset_hash(files)
        specs = []
        for m in range(wf.train.ensemble_size):
            init_path = init[m] if (init and wf.train.warm_start) else None
            tid = content_id("train", wf.train, self.elements, dhash, m, wf.seed, init_path)
            seed = derive_seed(wf.seed, "train", it, m)
            specs.append(TaskSpec(tid, "train", it, tasks.train_task, self._task_dir(it, "train", f"member{m}", tid),
                                  (files, wf.train, self.elements, m, seed, init_path), f"member {m}"))
        outs = runner.run(specs, phase)
        bad = [o for o in outs if o.status != "done"]
        if bad:
            o = bad[0]
            raise CalculationError(f"training {o.spec.name} of iteration {it} failed: {(o.result or {}).get('message') or o.error}",
                                   hint=f"see {o.spec.task_dir}; rerun `elt run` to retry (finished members are kept)")
        done = [TrainResult.model_validate(o.result) for o in outs]
        members = [r.checkpoint for r in done]
        metrics = _mean_metrics([r.metrics for r in done])
        return members, metrics

    def _walkers(self, it: int, stage_index: int):
        wf = self.wf
        st = wf.explore.stages[stage_index]
        out = []
        for si, a in enumerate(self.structures):
            for T in st.temperatures:
                for P in (st.pressures or [None]):
                    for w in range(st.walkers_per_structure):
                        wid = f"s{si}-T{T:g}" + (f"-P{P:g}" if P is not None else "") + f"-w{w}"
                        out.append((wid, a, T, P, derive_seed(wf.seed, "walker", it, wid)))
        return out

    def _explore(self, runner: TaskRunner, it: int, stage_index: int, members: list[str], sel: SelectionLevels,
                 follow=None) -> list[Outcome]:
        wf = self.wf
        st = wf.explore.stages[stage_index]
        walkers = [(WalkerSpec(id=wid, temperature=T, pressure=P, seed=seed, iteration=it), a)
                   for wid, a, T, P, seed in self._walkers(it, stage_index)]
        specs = []
        if not getattr(registry.get("explorer", st.explorer.kind), "batched", False):
            for walker, a in walkers:  # one walker per task
                tid = content_id("explore", st, sel, members, frame_hash(a), walker)
                specs.append(TaskSpec(tid, "explore", it, tasks.explore_task, self._task_dir(it, "explore", walker.id, tid),
                                      (walker, a, members, wf.train.kind, st, sel, wf.explore.threads), walker.id))
        else:  # walkers grouped into tasks, each task one batched MD
            groups = split_batches([len(a) for _, a in walkers], workers=self.cluster.worker_slots("explore"),
                                   max_atoms=st.explorer.max_atoms,
                                   max_walkers=self.profile.walkers_per_task or st.explorer.max_walkers)
            for k, g in enumerate(groups):
                ws, starts = [walkers[i][0] for i in g], [walkers[i][1] for i in g]
                tid = content_id("explore-batch", st, sel, members, [frame_hash(a) for a in starts], ws)
                specs.append(TaskSpec(tid, "explore", it, tasks.explore_batch_task,
                                      self._task_dir(it, "explore", f"batch{k}", tid),
                                      (ws, starts, members, wf.train.kind, st, sel, wf.explore.threads), f"batch{k}"))
        phase = f"iteration {it}: explore (stage {st.name or stage_index})" + (" + label" if follow else "")
        if follow is not None:
            inner = follow
            follow = lambda o: [s for w in _per_walker(o) for s in inner(w)]  # noqa: E731
        return [w for o in runner.run(specs, phase, follow)
                for w in (_per_walker(o) if o.spec.kind == "explore" else [o])]

    def _select_levels(self, stage_index: int, metrics: Optional[dict] = None) -> tuple[SelectionLevels, Optional[dict]]:
        """The levels of an iteration in stage ``stage_index`` whose training gave ``metrics``, and,
        where a level is auto, how it was derived (:mod:`elt.sampling.levels`; None when fixed)."""
        wf = self.wf
        st = wf.explore.stages[stage_index]
        lo, hi = st.trust_lo or wf.select.trust_lo, st.trust_hi or wf.select.trust_hi
        derived = None
        calibration = 0
        if "auto" in (lo, hi):
            fit = ((metrics or {}).get("train") or (metrics or {}).get("valid") or {}).get("rmse_f")
            devi, err = self.held_out
            scale = calibrate(devi, err, wf.select.auto.min_frames)
            auto = auto_levels(fit, scale, wf.select.auto, None if lo == "auto" else lo, None if hi == "auto" else hi)
            lo, hi, derived = auto.lo, auto.hi, {**auto.as_dict(), "calibration_frames": int(len(devi))}
            calibration = wf.select.auto.calibration_frames
        lv = SelectionLevels(lo=lo, hi=hi, elo=wf.select.energy_trust_lo, ehi=wf.select.energy_trust_hi,
                             max_per_walker=wf.select.max_per_walker, strategy=wf.select.strategy,
                             calibration=calibration)
        if wf.select.adaptive_lo is not None:
            # walkers keep every frame below hi as a potential candidate; the driver sets lo
            lv = lv.model_copy(update={"lo": 0.0, "elo": 0.0 if lv.ehi is not None else None,
                                       "max_per_walker": None})
        return lv, derived

    def _pool_features(self, walks: list[Outcome], pool: list) -> np.ndarray:
        """Descriptor vectors of the pooled candidates (stored by the walkers next to their frames)."""
        files = {}
        rows = []
        for _, wi, c in pool:
            if wi not in files:
                files[wi] = np.load(_explored(walks[wi]).features_file)
            rows.append(files[wi][c.index])
        return np.asarray(rows).reshape(len(rows), -1)

    def _label_ids(self, frames: list) -> list[str]:
        """The label task id of each frame: the method (with its input files' text) and the frame."""
        inputs = [Path(f).read_text() for f in self.label_cfg.input_files()]
        template_hash = content_id(*inputs) if inputs else None
        return [content_id("label", self.wf.label, template_hash, a.info.get(FRAME_ID) or frame_hash(a)) for a in frames]

    def _label_specs(self, frames: list, it: int) -> list[TaskSpec]:
        wf = self.wf
        exec_settings = self.cluster.exec_settings("label")
        return [TaskSpec(tid, "label", it, tasks.label_task, self.layout.label_dir(tid),
                         (a, self.label_cfg, exec_settings, wf.label.retries), a.info.get(FRAME_ID) or frame_hash(a))
                for a, tid in zip(frames, self._label_ids(frames))]

    @staticmethod
    def _label_results(outs: list[Outcome]) -> tuple[list, list[dict]]:
        labeled, failed = [], []
        for o in outs:
            if o.status == "done":
                labeled.append(tasks.load_labeled(o.result))
            else:
                r = o.result or {}
                failed.append({"task": o.spec.id, "frame_id": o.spec.name, "reason": r.get("reason", "error"),
                               "message": r.get("message") or o.error, "physics": bool(r.get("physics")),
                               "workdir": str(o.spec.task_dir)})
        return labeled, failed

    def _fresh(self, frames: list, seen: set) -> list:
        """Frames not yet in the data set nor chosen already (walkers of one start structure share
        their step-0 frame; a frame can come back in a later iteration)."""
        out = []
        for a in frames:
            fid = a.info.get(FRAME_ID)
            if fid in self.known or fid in seen:
                continue
            seen.add(fid)
            out.append(a)
        return out

    def _label(self, runner: TaskRunner, frames: list, it: int, phase: str) -> tuple[list, list[dict]]:
        return self._label_results(runner.run(self._label_specs(frames, it), phase))

    def _stream_labels(self, it: int, n_walkers: int):
        """The follow-up of a finished walker when select.stream is on: label its share of the
        candidates at once. Deterministic: the share and the seed depend on the walker only."""
        wf = self.wf
        quota = -(-wf.select.max_candidates // max(n_walkers, 1))

        def follow(o: Outcome) -> list[TaskSpec]:
            res = _explored(o) if o.status == "done" else None
            if res is None or not res.candidates:
                return []
            devs = np.array([c.max_devi_f for c in res.candidates])
            rng = np.random.default_rng(derive_seed(wf.seed, "select", it, o.spec.name))
            idx = choose(devs, quota, wf.select.strategy, rng)
            frames = read_frames(Path(res.candidates_file))
            return self._label_specs(self._fresh([frames[res.candidates[i].index] for i in idx], seen), it)

        seen: set = set()

        return follow

    def _task_dir(self, it: int, kind: str, name: str, tid: str) -> Path:
        return self.layout.task_dir(it, kind, name, tid)

    # ------------------------------------------------------------------ the loop
    def run(self) -> RunSummary:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.run_dir), RunState(self.run_dir) as state:
            self.state = state
            records = state.iterations()
            check_compatible(state, self.wf, len(records), records)
            self.prepare()
            with open_cluster(self.profile, self.run_dir) as cluster:
                self.cluster = cluster
                self.reporter.message(f"cluster: {cluster.describe()}")
                runner = TaskRunner(state, cluster, self.reporter)
                self.runner = runner
                return self._loop(runner, state, records)

    def _loop(self, runner: TaskRunner, state: RunState, records: list[dict]) -> RunSummary:
        wf = self.wf
        done = state.count_tasks("done")  # before this run dispatches anything
        if any(done.values()):
            self.reporter.message("resuming: " + ", ".join(f"{n} {k}" for k, n in sorted(done.items()) if n)
                                  + " task(s) finished before are reused, not run again")
        files = self._initial_data(runner)
        for r in records:
            self._restore_data_file(r)
            files.append(str(self.layout.data_file(r["data_file"])))
        self.known: set = set()  # frame ids in the data set: never added (or labeled) twice
        self.n_data = 0
        self.held_out = (np.zeros(0), np.zeros(0))  # (deviation, true error) of labeled candidates
        for f in files:
            frames = read_frames(Path(f))
            self.known.update(a.info.get(FRAME_ID) for a in frames)
            self.n_data += len(frames)
            self._hold_out(frames)
        pos = replay(wf, records)
        members = records[-1]["members"] if records else None
        if records:
            st = wf.explore.stages[min(pos.stage, len(wf.explore.stages) - 1)]
            self.reporter.message(f"resuming after iteration {records[-1]['iteration']} "
                                  f"({len(records)} finished; next: stage {st.name or pos.stage})")
        last = records[-1] if records else None
        while pos.done is None:
            rec = last = self._iteration(runner, pos, files, members)
            state.record_iteration(pos.iteration, rec)
            files.append(rec["data_file"])
            members = rec["members"]
            self.reporter.iteration_summary(rec)
            pos = advance(wf, pos, rec)
        # the final ensemble, trained on everything
        final, metrics = self._train(runner, pos.iteration, files, members, "final training")
        final = self._publish_model(final)
        state.set_meta("final", json.dumps({"members": final, "metrics": metrics, "status": pos.done}))
        promised = ((last or {}).get("levels") or {}).get("target")  # what 'accurate' meant at the end
        test = self._evaluate(runner, pos.iteration, final, promised) if wf.evaluate.frames else None
        if test is not None:
            state.set_meta("test", json.dumps(test))
        return RunSummary(str(self.run_dir), pos.done, pos.iteration, self.n_data, final, metrics, test, runner.dispatched)

    def _publish_model(self, members: list[str]) -> list[str]:
        """Copy the final members to RUN_DIR/model/ under their names, with the manifest of their
        kind (what elt.load_potential takes)."""
        out = []
        for m in members:
            dst = self.layout.model_member(Path(m).name)
            atomic_write_bytes(dst, Path(m).read_bytes())
            out.append(str(dst))
        write_manifest(self.layout.model_dir, self.wf.train.kind, out)
        return out

    @staticmethod
    def _gather(walks: list[Outcome], it: int):
        """Counts, stop reasons and the pooled candidates (max_devi_f, walker index, candidate) of
        the iteration's walkers; raises when every walker failed."""
        counts = {"accurate": 0, "candidate": 0, "failed": 0}
        stop_reasons: dict[str, int] = {}
        pool = []
        walker_failures = []
        for wi, o in enumerate(walks):
            if o.status != "done":
                walker_failures.append({"walker": o.spec.name, "message": (o.result or {}).get("message") or o.error})
                continue
            r = _explored(o)
            for k in counts:
                counts[k] += r.counts[k]
            stop_reasons[r.stop_reason] = stop_reasons.get(r.stop_reason, 0) + 1
            for c in r.candidates:
                pool.append((c.max_devi_f, wi, c))
        if walker_failures and len(walker_failures) == len(walks):
            raise CalculationError(f"every exploration walker of iteration {it} failed: {walker_failures[0]['message']}",
                                   hint="see the explore/ task folders of this iteration; rerun `elt run` to retry")
        return counts, stop_reasons, pool, walker_failures

    def _select(self, walks: list[Outcome], pool: list, counts: dict, lv: SelectionLevels, it: int):
        """The frames to label among all walkers' candidates (adaptive lo, per-walker cap, budget,
        strategy); updates ``counts`` under the adaptive lo. Returns the frames, the candidate pool
        in force and the levels in force (lo set by the adaptive lo)."""
        wf = self.wf
        rng = np.random.default_rng(derive_seed(wf.seed, "select", it))
        feats = self._pool_features(walks, pool) if wf.select.strategy == "fps" and pool else None
        ad = wf.select.adaptive_lo
        if ad is not None:  # re-classify every frame below hi with the adaptive lo
            lo, keep = adaptive_lo(np.array([p[0] for p in pool]), ad.candidates, ad.fraction, ad.lo_min, lv.hi)
            lv = lv.model_copy(update={"lo": lo})
            counts["accurate"], counts["candidate"] = len(pool) - len(keep), len(keep)
            pool, feats = [pool[i] for i in keep], (feats[keep] if feats is not None else None)
            keep = cap_per_group([p[1] for p in pool], np.array([p[0] for p in pool]), wf.select.max_per_walker,
                                 wf.select.strategy, rng, feats)
            pool, feats = [pool[i] for i in keep], (feats[keep] if feats is not None else None)
        chosen = choose(np.array([p[0] for p in pool]), wf.select.max_candidates, wf.select.strategy, rng, feats)
        frames = _candidate_frames(walks, [pool[i][1:] for i in chosen])
        return self._fresh(frames, set()), pool, lv

    def _calibration_frames(self, walks: list[Outcome], it: int, chosen: set) -> list:
        """``select.auto.calibration_frames`` frames drawn at random from every walker's random
        sample of its frames below trust_hi (not only candidates), fresh ones only."""
        want = self.wf.select.auto.calibration_frames
        pool = [(wi, c) for wi, o in enumerate(walks) if o.status == "done" for c in _explored(o).calibration]
        pool = [(wi, c) for wi, c in pool if c.frame_id not in chosen and c.frame_id not in self.known]
        if not want or not pool:
            return []
        rng = np.random.default_rng(derive_seed(self.wf.seed, "calibrate", it))
        pick = sorted(rng.choice(len(pool), size=min(want, len(pool)), replace=False).tolist())
        out = _candidate_frames(walks, [pool[k] for k in pick])
        for a in out:
            a.info[PICK] = "calibration"  # reports tell the unrestricted sample from the candidates
        return self._fresh(out, set())

    def _check_failed_fraction(self, n: int, failed: list[dict], it: int) -> None:
        wf = self.wf
        if n and len(failed) > wf.label.max_failed_fraction * n:
            raise CampaignError(
                f"{len(failed)} of {n} labels of iteration {it} failed "
                f"(more than label.max_failed_fraction = {wf.label.max_failed_fraction}):\n  - "
                + "\n  - ".join(f"{f['reason']}: {f['message']} ({f['workdir']})" for f in failed[:20]),
                hint="fix the label settings (see the task folders), or raise label.max_failed_fraction; "
                     "rerun `elt run` to continue: finished labels are kept")

    def _iteration(self, runner: TaskRunner, pos: Position, files: list[str], members_prev) -> dict:
        wf = self.wf
        it, si = pos.iteration, pos.stage
        st = wf.explore.stages[si]
        t0 = time.perf_counter()
        members, metrics = self._train(runner, it, files, members_prev, f"iteration {it}: train")
        levels, derived = self._select_levels(si, metrics)
        t1 = time.perf_counter()
        streamed = None
        if wf.select.stream:
            outs = self._explore(runner, it, si, members, levels, self._stream_labels(it, len(self._walkers(it, si))))
            walks = [o for o in outs if o.spec.kind == "explore"]
            rank = {o.spec.name: i for i, o in enumerate(walks)}  # walker order, not completion order
            streamed = sorted((o for o in outs if o.spec.kind == "label"),
                              key=lambda o: (rank[o.spec.args[0].info[SOURCE]], o.spec.args[0].info[STEP]))
        else:
            walks = self._explore(runner, it, si, members, levels)
        t2 = time.perf_counter()
        counts, stop_reasons, pool, walker_failures = self._gather(walks, it)
        lv = levels
        frames = []
        if streamed is None:
            frames, pool, lv = self._select(walks, pool, counts, lv, it)
        t3 = time.perf_counter()
        if streamed is not None:  # labeled while exploring, in walker order
            labeled, failed = self._label_results(streamed)
            frames = [o.spec.args[0] for o in streamed]
        else:
            labeled, failed = self._label(runner, frames, it, f"iteration {it}: label")
        calib = self._calibration_frames(walks, it, {a.info.get(FRAME_ID) for a in frames})
        if calib:  # an unrestricted sample of the explored frames, labeled to calibrate the deviation
            more, more_failed = self._label(runner, calib, it, f"iteration {it}: label (calibration)")
            labeled, failed, frames = labeled + more, failed + more_failed, frames + calib
        t4 = time.perf_counter()
        self._check_failed_fraction(len(frames), failed, it)
        data_file = self.layout.iteration_data(it)
        label_tasks = self._label_ids(labeled)  # what rebuilds the data file (_restore_data_file)
        write_frames(data_file, labeled)
        self.known.update(a.info.get(FRAME_ID) for a in labeled)
        self._hold_out(labeled)
        self.n_data += len(labeled)
        dataset_size = self.n_data
        total = sum(counts.values())
        ratio = counts["accurate"] / total if total else 0.0
        stuck = is_stuck(counts, len(pool), stage_threshold(wf, si))
        return {
            "iteration": it, "stage": si, "stage_name": st.name or f"stage {si}",
            "temperatures": st.temperatures, "pressures": st.pressures,
            "trust_lo": lv.lo, "trust_hi": lv.hi, "energy_trust_lo": lv.elo, "energy_trust_hi": lv.ehi,
            "levels": derived, "calibration_labels": len(calib),
            "accurate_threshold": stage_threshold(wf, si),
            # auto levels are trusted once a calibration of the deviation exists (plan.advance)
            "calibrated": derived is None or derived.get("scale") is not None,
            "walkers": len(walks), "walker_failures": walker_failures, "frames": total, **counts,
            "accurate_ratio": ratio,
            "candidate_ratio": counts["candidate"] / total if total else 0.0,
            "failed_ratio": counts["failed"] / total if total else 0.0,
            "stop_reasons": stop_reasons, "candidates": len(pool), "selected": len(frames),
            "labels_ok": len(labeled), "labels_failed": len(failed), "failures": failed,
            "dataset_size": dataset_size, "train": metrics, "members": members,
            "explore_tasks": [str(o.spec.task_dir.relative_to(self.layout.explore_dir(it, ""))) for o in walks],
            "data_file": str(data_file), "data_sha256": file_digest(data_file), "label_tasks": label_tasks,
            "stuck": stuck,
            "seconds": {"train": t1 - t0, "explore": t2 - t1, "select": t3 - t2, "label": t4 - t3},
            "finished": time.time(),
        }

    def _evaluate(self, runner: TaskRunner, it: int, members: list[str], promised: Optional[float]) -> dict:
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
        [o] = runner.run([TaskSpec(tid, "explore", it, tasks.explore_task, self._task_dir(it, "evaluate", "md", tid),
                                   (walker, a, members, wf.train.kind, test_stage, sel, wf.explore.threads), "test")],
                         "final test: MD")
        if o.status != "done":
            return {"error": (o.result or {}).get("message") or o.error}
        frames = fresh_test_frames(read_frames(Path(_explored(o).candidates_file)), self.known, ev.frames)
        labeled, failed = self._label(runner, frames, it, "final test: label")
        if not labeled:
            return {"error": "every test label failed", "failures": failed}
        pot = registry.get("potential", wf.train.kind).load_ensemble([Path(m) for m in members])
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


def _candidate_frames(walks: list[Outcome], picks: list) -> list:
    """The frames of ``picks`` ((walker index, Candidate) pairs) from the walkers' candidates files,
    each file read once."""
    cache: dict[int, list] = {}
    out = []
    for wi, c in picks:
        if wi not in cache:
            cache[wi] = read_frames(Path(_explored(walks[wi]).candidates_file))
        out.append(cache[wi][c.index])
    return out


def _explored(o: Outcome) -> ExploreResult:
    """The typed result of a finished exploration task (stored results of earlier runs included)."""
    return ExploreResult.model_validate(o.result)


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

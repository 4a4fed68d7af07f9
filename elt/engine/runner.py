"""Submit tasks to Dask, reuse finished ones, record results: the driver's only path to workers."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from elt.data.layout import RunLayout
from elt.engine.state import RunState
from elt.engine.tasks import run_in_dir

log = logging.getLogger(__name__)


@dataclass
class TaskSpec:
    id: str
    kind: str            # train | explore | label | evaluate
    iteration: int
    fn: Callable[..., dict]     # fn(task_dir, job) -> JSON-able result
    task_dir: Path
    job: Any = None             # the task's one input record (elt.engine.tasks: TrainJob, ExploreJob, LabelJob)
    name: str = ""


@dataclass
class Outcome:
    spec: TaskSpec
    status: str                 # done | failed
    result: Optional[dict] = None
    error: Optional[str] = None
    reused: bool = False


class Reporter:
    """Progress hooks; the CLI passes one that draws bars. The default logs."""

    def phase_start(self, name: str, total: int, reused: int) -> None:
        log.info("%s: %d tasks (%d reused)", name, total, reused)

    def advance(self, outcome: Outcome) -> None:
        pass

    def phase_grow(self, n: int) -> None:
        """``n`` more tasks joined the running phase."""

    def phase_end(self, name: str) -> None:
        pass

    def message(self, text: str) -> None:
        log.info(text)

    def iteration_summary(self, record: dict) -> None:
        log.info(summary_line(record))


def summary_line(r: dict) -> str:
    """One line per iteration: iteration, stage, frames, accurate/candidate/failed %, labels, data, RMSE."""
    t = r.get("train") or {}
    rmse = (t.get("valid") or t.get("train") or {})
    rmse_f = rmse.get("rmse_f")
    return (f"iter {r['iteration']:3d} | {r['stage_name']} | {r['frames']} frames | "
            f"acc {100 * r['accurate_ratio']:5.1f}% cand {100 * r['candidate_ratio']:5.1f}% "
            f"fail {100 * r['failed_ratio']:5.1f}% | +{r['labels_ok']} labels"
            + (f" ({r['labels_failed']} failed)" if r["labels_failed"] else "")
            + f" | data {r['dataset_size']} | force RMSE "
            + (f"{rmse_f:.3f} eV/Å" if rmse_f is not None else "n/a")
            + (f" | trust {r['trust_lo']:.3g}-{r['trust_hi']:.3g} eV/Å" if r.get("trust_lo") is not None else "")
            + (" auto" + ("" if r.get("calibrated", True) else ", not yet calibrated") if r.get("levels") else "")
            + "".join(f"\n  warning: {w}" for w in t.get("warnings") or [])
            + "".join(f"\n  walker {f['walker']} failed: {f['message']}" for f in r.get("walker_failures") or []))


def _reusable(rec: Optional[dict]) -> bool:
    if rec is None:
        return False
    if rec["status"] == "done":
        return True
    # physics failures are data; other failures are tried again on resume
    return bool(rec["result"] and rec["result"].get("physics"))


# Dask's KilledWorker says the workers died, not why; the commonest cause with elt is memory
KILLED_HINT = (" (hint: a worker that outgrows its memory is killed: raise the memory of the pool that "
               "runs this kind of task in the cluster profile (`memory:`; local clusters: `memory_limit`), "
               "or run fewer tasks per worker; the worker logs say more)")


@dataclass
class TaskRunner:
    state: RunState
    cluster: Any
    reporter: Reporter = field(default_factory=Reporter)
    dispatched: int = 0
    # (kind, phase, submitted, completed, seconds inside the task) of every dispatched task, for
    # benchmarks and time estimates; perf_counter clock of the driver
    timeline: list = field(default_factory=list)
    check_every: float = 5.0

    def _completed(self, futures: dict):
        """Yield futures of ``futures`` as they finish (the caller removes each); every few seconds
        ask the cluster whether tasks can run at all (a SLURM pool whose jobs never start raises a
        DispatchError instead of hanging)."""
        from distributed import wait

        while futures:  # the caller takes each yielded future out of it; follow-up tasks join it
            try:
                done, _ = wait(list(futures), timeout=self.check_every, return_when="FIRST_COMPLETED")
            except TimeoutError:  # distributed's TimeoutError is the builtin one
                done = set()
            for fut in done:
                yield fut
            check = getattr(self.cluster, "check", None)
            if check is not None:
                check()

    def run(self, specs: list[TaskSpec], phase: str,
            follow: Optional[Callable[[Outcome], list[TaskSpec]]] = None) -> list[Outcome]:
        """Run ``specs`` (reusing finished ones) and return their outcomes in order. ``follow``, if
        given, is called with each outcome of ``specs`` as it arrives and returns further tasks to
        run at once (e.g. a walker's labels); their outcomes follow those of ``specs``, in the order
        they were created."""
        outcomes: dict[str, Outcome] = {}
        order = [s.id for s in specs]
        futures = {}
        submitted = {}
        known = {s.id: self.state.task(s.id) for s in specs}  # one state lookup per primary task
        self.reporter.phase_start(phase, len(specs), sum(_reusable(r) for r in known.values()))

        def finish(s: TaskSpec, out: Outcome) -> None:
            outcomes[s.id] = out
            self.reporter.advance(out)
            if follow is not None and s.id in primary:
                more = follow(out)
                if more:
                    self.reporter.phase_grow(len(more))
                    start(more)

        def start(batch: list[TaskSpec]) -> None:
            client = self.cluster.client
            for s in batch:
                if s.id not in primary:
                    order.append(s.id)
                rec = known[s.id] if s.id in known else self.state.task(s.id)
                if _reusable(rec):
                    finish(s, Outcome(s, rec["status"], rec["result"], reused=True))
                    continue
                fut = client.submit(run_in_dir, s.fn, str(s.task_dir), s.job, key=f"{s.kind}-{s.id}",
                                    journal_file=str(RunLayout(self.state.run_dir).journal), tag=f"{s.kind}:{s.id}",
                                    pure=False, **self.cluster.submit_options(s.kind))
                futures[fut] = s
                submitted[s.id] = time.perf_counter()
                self.dispatched += 1

        primary = set(order)
        try:
            start(specs)
            for fut in self._completed(futures):
                s = futures.pop(fut)
                try:
                    res = fut.result()
                except Exception as e:  # the task raised or its worker died too often
                    message = str(e) + (KILLED_HINT if type(e).__name__ == "KilledWorker" else "")
                    out = Outcome(s, "failed", {"physics": False, "reason": type(e).__name__,
                                                "message": message}, error=f"{type(e).__name__}: {message}")
                    self.state.record_task(s.id, s.kind, s.iteration, "failed", out.result)
                else:
                    status = "failed" if res.get("status") == "failed" else "done"
                    out = Outcome(s, status, res, reused=bool(res.get("reused")))
                    self.state.record_task(s.id, s.kind, s.iteration, status, res,
                                           seconds=float(res.get("seconds", 0.0)),
                                           attempts=int(res.get("attempts", 1)))
                # its result is recorded: the scheduler may forget it (a result held by a future
                # whose worker's job ends would be computed again, in a job submitted for nothing)
                fut.release()
                self.timeline.append((s.kind, phase, submitted[s.id], time.perf_counter(),
                                      float((out.result or {}).get("seconds", 0.0))))
                finish(s, out)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        finally:
            self.reporter.phase_end(phase)
        return [outcomes[i] for i in dict.fromkeys(order)]

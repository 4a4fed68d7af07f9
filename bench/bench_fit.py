"""Does training fit a small PySCF data set (issue 16)? Old training recipe against the defaults.

Methanol (6 atoms), HF/STO-3G energies and analytic forces from PySCF on --frames randomly
perturbed copies (0.08 Å); one member per recipe trained from scratch on them. Printed per recipe:
training and validation RMSE of energy per atom (meV/atom) and forces (eV/Å), steps, why training
stopped and the fit warnings. Goal (issue 16): < 20 meV/atom on the training data with defaults.

    python bench/bench_fit.py               # ~2 min on 2 shared cores
    python bench/bench_fit.py --frames 30 --json fit.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# the shipped water-pyscf settings before issue 16 (fixed budget in epochs, no plateau checks)
OLD = {"epochs": 150, "warm_epochs": 60, "min_steps": 1, "max_steps": 2000, "patience": None,
       "learning_rate": 1e-3, "learning_rate_end": 1e-4}


def methanol_frames(n: int, seed: int):
    from ase.build import molecule
    from pyscf import gto, scf

    from elt.data.frames import attach_labels
    from elt.data.structures import perturbed_copies
    from elt.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

    out = []
    for a in perturbed_copies([molecule("CH3OH")], n, 0.08, 0.0, seed):
        mol = gto.M(atom=[(s, p) for s, p in zip(a.get_chemical_symbols(), a.positions)], basis="sto-3g",
                    unit="Angstrom", verbose=0)
        mf = scf.RHF(mol).run(conv_tol=1e-9)
        grad = mf.nuc_grad_method().kernel()
        out.append(attach_labels(a, mf.e_tot * HARTREE_TO_EV, -grad * HARTREE_TO_EV / BOHR_TO_ANGSTROM))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path, default=Path("bench-runs/fit"))
    args = ap.parse_args()
    import torch

    from elt.config.train import TrainConfig
    from elt.potentials.deepmd import train_member

    torch.set_num_threads(1)
    frames = methanol_frames(args.frames, args.seed)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, recipe in (("old", OLD), ("default", {})):
        t0 = time.perf_counter()
        m = train_member(frames, TrainConfig(**recipe), ["C", "H", "O"], 0, args.seed, args.workdir / f"{name}.pt")
        m["wall"] = round(time.perf_counter() - t0, 1)
        results[name] = m
        v = m["valid"] or {"rmse_e": float("nan"), "rmse_f": float("nan")}
        print(f"{name:8s} train {1000 * m['train']['rmse_e']:7.1f} meV/atom {m['train']['rmse_f']:.3f} eV/Å | "
              f"valid {1000 * v['rmse_e']:7.1f} meV/atom {v['rmse_f']:.3f} eV/Å | steps {m['steps']} "
              f"({m['stop_reason']}, cap {m['step_cap']}) {m['wall']:.0f} s | warnings: {m['warnings'] or 'none'}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

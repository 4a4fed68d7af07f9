"""Export a run's labeled data set for other codes.

    python examples/export_data.py RUN_DIR OUT_DIR

Writes OUT_DIR/data.extxyz (ASE, MACE, NequIP: energies under REF_energy, forces under REF_forces)
and OUT_DIR/npy/ (dpdata / DeePMD-kit's deepmd/npy, one system per formula).
"""

import sys
from pathlib import Path

from elt.engine.dataset import export_run

run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
xyz = export_run(run_dir, "extxyz", out / "data.extxyz", energy_key="REF_energy", forces_key="REF_forces")
npy = export_run(run_dir, "deepmd-npy", out / "npy")
print(f"{xyz['frames']} frames -> {xyz['written'][0]}; deepmd/npy systems: {len(npy['written'])}")

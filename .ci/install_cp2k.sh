#!/usr/bin/env bash
# Install CP2K from Debian's packages when cp2k.psmp is missing (the cp2k-marked tests run it).
# Idempotent; called by .ci/run. Needs root (CI runs as root) and Debian/Ubuntu's apt.
set -euo pipefail

if command -v cp2k.psmp >/dev/null 2>&1; then
  echo "install_cp2k: $(command -v cp2k.psmp) already present"
else
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_cp2k: cp2k.psmp is missing and apt-get is not available; install CP2K by hand" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends cp2k >/dev/null
fi

# a smoke test: the binary starts, and its data files (basis sets, pseudopotentials) are there
version="$(OMP_NUM_THREADS=1 cp2k.psmp --version 2>&1)" || { echo "install_cp2k: cp2k.psmp --version failed:" >&2; echo "$version" >&2; exit 1; }
grep -m1 "CP2K version" <<<"$version" || { echo "install_cp2k: unexpected --version output" >&2; exit 1; }
for f in BASIS_MOLOPT GTH_POTENTIALS; do
  if [ ! -f "/usr/share/cp2k/$f" ] && [ ! -f "/usr/share/cp2k/data/$f" ] && [ -z "${CP2K_DATA_DIR:-}" ]; then
    echo "install_cp2k: CP2K data file $f not found under /usr/share/cp2k (set CP2K_DATA_DIR)" >&2
    exit 1
  fi
done
echo "install_cp2k: ok"

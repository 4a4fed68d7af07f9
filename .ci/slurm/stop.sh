#!/usr/bin/env bash
# Stop the single-node SLURM started by .ci/slurm/start.sh: slurmd, slurmctld and munged, each
# by the pid file in ELT_SLURM_DIR (default /tmp/elt-slurm). Daemons it did not start are left
# alone (a munged that was already running stays up).
set -uo pipefail

DIR="${ELT_SLURM_DIR:-/tmp/elt-slurm}"
say() { echo "[elt-slurm] $*"; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

stop() {  # name pidfile
    local name=$1 pidfile=$2 pid
    if [ ! -f "$pidfile" ]; then say "$name: no pid file ($pidfile), nothing to stop"; return; fi
    pid=$(cat "$pidfile")
    if ! kill -0 "$pid" 2>/dev/null; then
        say "$name: pid $pid not running"; $SUDO rm -f "$pidfile"; return
    fi
    $SUDO kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name: pid $pid ignored SIGTERM for 10 s, sending SIGKILL"; $SUDO kill -KILL "$pid"
    fi
    $SUDO rm -f "$pidfile"
    say "$name: stopped (pid $pid)"
}

# jobs still queued or running on this SLURM are cancelled first (no orphaned worker processes)
if [ -f "$DIR/slurm.conf" ] && [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    jobs=$(SLURM_CONF="$DIR/slurm.conf" squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// }" ]; then
        say "cancelling jobs: $jobs"
        SLURM_CONF="$DIR/slurm.conf" $SUDO scancel $jobs || true
        for _ in $(seq 30); do
            [ -z "$(SLURM_CONF="$DIR/slurm.conf" squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5
        done
    fi
fi

stop slurmd "$DIR/slurmd.pid"
stop slurmctld "$DIR/slurmctld.pid"
stop munged "$DIR/munge/munged.pid"

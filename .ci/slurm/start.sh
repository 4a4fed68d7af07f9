#!/usr/bin/env bash
# Configure and start a single-node SLURM on this machine (controller + compute node in one),
# for elt's SLURM tests and for trying the slurm profiles locally. Idempotent: daemons that are
# already running are left alone.
#
#   .ci/slurm/start.sh            # configure, start munged/slurmctld/slurmd, wait, run a test job
#   .ci/slurm/stop.sh             # stop the daemons this script started (by pid)
#
# Environment:
#   ELT_SLURM_DIR     state, spool, logs, pid files and slurm.conf (default /tmp/elt-slurm)
#   ELT_SLURM_CPUS    CPUs the node reports (default: 4 x cores, at least 8; oversubscribed on
#                     purpose so that several 1-core worker jobs run side by side)
#   ELT_SLURM_TIMEOUT seconds to wait for the node and the test job (default 60)
#
# Works without systemd or cgroups: proctrack/linuxproc, task/none, no accounting.
# Needs root (munged runs as user munge; slurmd must start jobs as the submitting user).
set -euo pipefail

DIR="${ELT_SLURM_DIR:-/tmp/elt-slurm}"
TIMEOUT="${ELT_SLURM_TIMEOUT:-60}"
say() { echo "[elt-slurm] $*"; }
die() { echo "[elt-slurm] ERROR: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "run as root (or install sudo): munged and slurmd need it"
    SUDO="sudo"
fi

# --- packages --------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null
fi
say "$(slurmd -V)"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

$SUDO mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge"
$SUDO chown munge:munge "$DIR/munge" 2>/dev/null || true

# --- munge -----------------------------------------------------------------------------------
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating /etc/munge/munge.key"
        $SUDO mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            $SUDO mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        $SUDO chown munge:munge /etc/munge/munge.key
        $SUDO chmod 400 /etc/munge/munge.key
    fi
    $SUDO mkdir -p /run/munge /var/lib/munge /var/log/munge
    $SUDO chown munge:munge /run/munge /var/lib/munge /var/log/munge
    $SUDO chmod 755 /run/munge
    say "starting munged as user munge"
    $SUDO runuser -u munge -- /usr/sbin/munged --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/munge/munged.log" --force
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
    munge -n | unmunge >/dev/null || die "munged does not answer; see $DIR/munge/munged.log"
fi

# --- slurm.conf ------------------------------------------------------------------------------
CORES=$(nproc)
CPUS="${ELT_SLURM_CPUS:-$(( CORES * 4 > 8 ? CORES * 4 : 8 ))}"
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
CTLHOST=$(hostname -s)
MARK="# written by elt .ci/slurm/start.sh"
CONF="$DIR/slurm.conf"
$SUDO tee "$CONF" >/dev/null <<CONFEOF
$MARK
ClusterName=elt-local
SlurmctldHost=${CTLHOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
SchedulerParameters=sched_interval=2
MessageTimeout=20
KillWait=5
MinJobAge=120
InactiveLimit=0
SlurmdTimeout=300
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONFEOF

# Commands read /etc/slurm/slurm.conf unless SLURM_CONF says otherwise: install ours there
# when that file is absent or ours; never overwrite a real cluster's configuration.
SYS_CONF=/etc/slurm/slurm.conf
if [ ! -e "$SYS_CONF" ] || grep -q "^$MARK" "$SYS_CONF" 2>/dev/null; then
    $SUDO mkdir -p /etc/slurm
    $SUDO cp "$CONF" "$SYS_CONF"
    say "configuration: $SYS_CONF (copy of $CONF)"
else
    export SLURM_CONF="$CONF"
    say "configuration: $CONF ($SYS_CONF belongs to another SLURM: export SLURM_CONF=$CONF)"
fi

# --- daemons ---------------------------------------------------------------------------------
if alive "$DIR/slurmctld.pid"; then
    say "slurmctld already running (pid $(cat "$DIR/slurmctld.pid"))"
else
    say "starting slurmctld"
    $SUDO env SLURM_CONF="$CONF" slurmctld -f "$CONF"
fi
if alive "$DIR/slurmd.pid"; then
    say "slurmd already running (pid $(cat "$DIR/slurmd.pid"))"
else
    say "starting slurmd (node localhost, $CPUS CPUs, ${MEM_MB} MB)"
    $SUDO env SLURM_CONF="$CONF" slurmd -f "$CONF" -N localhost
fi

# --- wait until usable -----------------------------------------------------------------------
deadline=$(( $(date +%s) + TIMEOUT ))
state=""
while :; do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -1 || true)
    case "$state" in idle|mixed|allocated|completing) break ;; esac
    case "$state" in *drain*|down*|*fail*)
        scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;; esac
    [ "$(date +%s)" -lt "$deadline" ] || die "node state '${state:-no answer}' after ${TIMEOUT}s; see $DIR/slurmctld.log and $DIR/slurmd.log"
    sleep 1
done
say "node localhost is $state"

out=$(timeout "$TIMEOUT" srun -p debug -N1 -n1 -t 1 bash -c 'echo job=$SLURM_JOB_ID' 2>&1) \
    || die "test job failed: $out (see $DIR/slurmctld.log and $DIR/slurmd.log)"
say "test job ran: $out"
say "SLURM is up (logs and state in $DIR)"

#!/usr/bin/env bash
# Install (when missing) and start a single-node Slurm cluster on this machine, for CI:
# munged, slurmctld and slurmd from Debian's packages, one node with this machine's CPUs,
# one default partition, no accounting database. Waits until the node is idle and
# `srun hostname` works. Needs root (or password-less sudo).
#
#   .ci/slurm/start.sh      # then: LOWRANK_AMT_SLURM=1 .venv/bin/pytest -m slurm
#   .ci/slurm/stop.sh       # stops only the daemons this script started
#
# State (pid files of the daemons started here, timings) goes to $STATE_DIR.
# An existing /etc/slurm/slurm.conf that this script did not write is never replaced.
set -euo pipefail

STATE_DIR=${LOWRANK_AMT_SLURM_STATE:-/run/lowrank-amt-slurm}
PARTITION=${LOWRANK_AMT_SLURM_PARTITION:-ci}
CONF=/etc/slurm/slurm.conf
MARKER="# written by lowrank-amt .ci/slurm/start.sh"
WAIT_SECONDS=60

if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then exec sudo -n --preserve-env=LOWRANK_AMT_SLURM_STATE,LOWRANK_AMT_SLURM_PARTITION "$0" "$@"; fi
  echo "start.sh: needs root (or password-less sudo) to install and start Slurm" >&2
  exit 1
fi

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "slurm-ci [$(elapsed) s]: $*"; }
fail() { echo "slurm-ci: $*" >&2; exit 1; }

# --- packages -------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
log "slurm $(slurmctld -V | awk '{print $2}'), munge $(munged -V 2>&1 | awk '{print $1}' | sed 's/munge-//')"
mkdir -p "$STATE_DIR"

# --- munge ----------------------------------------------------------------------------
# The package normally creates the key; a fresh container may lack it.
if [ ! -s /etc/munge/munge.key ]; then
  log "creating /etc/munge/munge.key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already running (not started here, will not be stopped)"
else
  runuser -u munge -- munged
  cp /run/munge/munged.pid "$STATE_DIR/munged.pid"
  log "munged started (pid $(cat "$STATE_DIR/munged.pid"))"
  munge -n | unmunge >/dev/null || fail "munge does not work: see /var/log/munge/munged.log"
fi

# --- slurm.conf -----------------------------------------------------------------------
if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
  fail "$CONF exists and was not written by this script; refusing to replace it"
fi
host=$(hostname -s)
# slurmd -C reports this machine's topology and memory; Slurm drains a node that claims
# more memory than it has, so advertise a bit less (95 %).
node_line=$(slurmd -C | head -n 1)
real_memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
topology=$(tr ' ' '\n' <<<"$node_line" | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
mkdir -p /etc/slurm
cat >"$CONF" <<EOF
$MARKER
# Single-node CI cluster: no cgroups, no accounting database.
ClusterName=lowrank-amt-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Without accounting, job states come from squeue, which forgets a finished job
# MinJobAge seconds after it ends: keep it well above Snakemake's status interval.
MinJobAge=600
# A cancelled job gets SIGTERM, then SIGKILL this many seconds later.
KillWait=5
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 ${topology}RealMemory=$((real_memory * 95 / 100)) State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
log "wrote $CONF (node $host: ${topology}RealMemory=$((real_memory * 95 / 100)))"

# --- daemons --------------------------------------------------------------------------
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if running "$STATE_DIR/slurmctld.pid"; then
  log "slurmctld already running"
else
  # -c: start with a clean state (no jobs or node states left from an earlier cluster).
  slurmctld -c
  log "slurmctld started"
fi
if running "$STATE_DIR/slurmd.pid"; then
  log "slurmd already running"
else
  slurmd
  log "slurmd started"
fi

# --- wait until usable ----------------------------------------------------------------
for _ in $(seq "$WAIT_SECONDS"); do
  state=$(sinfo --noheader --nodes="$host" --format=%T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 1
done
[ "$state" = idle ] || fail "node $host is '${state:-unknown}', not idle, after ${WAIT_SECONDS}s: see /var/log/slurm/"
log "node $host idle in partition $PARTITION"
got=$(timeout "$WAIT_SECONDS" srun --partition="$PARTITION" --ntasks=1 --time=1 hostname) \
  || fail "srun hostname failed: see /var/log/slurm/"
[ "$got" = "$(hostname)" ] || fail "srun hostname printed '$got', expected '$(hostname)'"
log "srun hostname works; cluster up in $(elapsed) s"
elapsed >"$STATE_DIR/start_seconds"

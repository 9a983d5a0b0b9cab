#!/usr/bin/env bash
# Stop the Slurm daemons that .ci/slurm/start.sh started (and only those): slurmd,
# slurmctld, then munged if start.sh started it. Each is identified by the pid file in
# $STATE_DIR and its process name, so a daemon of another installation is left alone.
set -euo pipefail

STATE_DIR=${LOWRANK_AMT_SLURM_STATE:-/run/lowrank-amt-slurm}

if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then exec sudo -n --preserve-env=LOWRANK_AMT_SLURM_STATE "$0" "$@"; fi
  echo "stop.sh: needs root (or password-less sudo)" >&2
  exit 1
fi

stop_daemon() {  # name: pid file $STATE_DIR/<name>.pid, process name <name>
  local name=$1 pidfile="$STATE_DIR/$1.pid" pid
  if [ ! -s "$pidfile" ]; then
    echo "slurm-ci: $name was not started by start.sh (no $pidfile)"
    return
  fi
  pid=$(cat "$pidfile")
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]; then
    echo "slurm-ci: $name (pid $pid) is not running"
    rm -f "$pidfile"
    return
  fi
  kill -TERM "$pid"
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "slurm-ci: $name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid"
  fi
  rm -f "$pidfile"
  echo "slurm-ci: stopped $name (pid $pid)"
}

stop_daemon slurmd
stop_daemon slurmctld
stop_daemon munged

#!/usr/bin/env bash
# Stop the single-node SLURM started by cluster/slurm-local-start.sh:
# cancel all jobs, stop slurmd, slurmctld and munged by pid file, and wait for
# their pid files to go. Never kills by process name. Idempotent.
#
# Usage: cluster/slurm-local-stop.sh [--keep-munge]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=slurm-local/common.sh
. "$HERE/slurm-local/common.sh"

keep_munge=0
for arg in "$@"; do
    case "$arg" in
        --keep-munge) keep_munge=1 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) die "unknown argument '$arg'; usage: $0 [--keep-munge]" ;;
    esac
done
require_root

# stop_daemon NAME PIDFILE: SIGTERM the pid in PIDFILE, wait for the daemon to
# remove its pid file; SIGKILL after the timeout; remove a stale pid file.
stop_daemon() {
    local name=$1 pidfile=$2 pid waited=0
    if [ ! -e "$pidfile" ]; then
        log "$name: not running (no $pidfile)"
        return 0
    fi
    if ! pid_alive "$pidfile" "$name"; then
        log "$name: stale pid file $pidfile (process gone or a zombie), removing it"
        rm -f "$pidfile"
        return 0
    fi
    pid=$(tr -dc '0-9' 2>/dev/null <"$pidfile") || return 0
    log "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    while [ -e "$pidfile" ] && pid_alive "$pidfile" "$name"; do
        if [ "$waited" -ge "$((MFRS_SLURM_TIMEOUT * 5))" ]; then
            log "$name: pid $pid still running after ${MFRS_SLURM_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    # The daemon normally removes its own pid file; a zombie or a SIGKILLed
    # daemon leaves it behind.
    if [ -e "$pidfile" ]; then
        if pid_alive "$pidfile" "$name"; then
            die "$name: pid $pid did not stop; see its log under $MFRS_SLURM_LOG_DIR"
        fi
        rm -f "$pidfile"
    fi
    log "$name: stopped"
}

# Cancel every job while slurmctld is still there to do it.
if pid_alive "$SLURMCTLD_PID_FILE" slurmctld; then
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
        # shellcheck disable=SC2086
        scancel $jobs || true
        for _ in $(seq 1 $((MFRS_SLURM_TIMEOUT * 5))); do
            [ -z "$(squeue -h -o %i 2>/dev/null || true)" ] && break
            sleep 0.2
        done
        left=$(squeue -h -o '%i %T' 2>/dev/null || true)
        [ -z "$left" ] || log "jobs still listed after ${MFRS_SLURM_TIMEOUT}s (slurmctld state is wiped at next start): $left"
    else
        log "no jobs to cancel"
    fi
fi

stop_daemon slurmd "$SLURMD_PID_FILE"
stop_daemon slurmctld "$SLURMCTLD_PID_FILE"
if [ "$keep_munge" -eq 0 ]; then
    stop_daemon munged "$MUNGE_PID_FILE"
fi
log "stopped"

# Shared settings for cluster/slurm-local-start.sh and slurm-local-stop.sh.
# Sourced, not run. Every path can be overridden from the environment.

MFRS_SLURM_CONF_DIR="${MFRS_SLURM_CONF_DIR:-/etc/slurm}"     # slurm.conf, gres.conf (clients read it here)
MFRS_SLURM_RUN_DIR="${MFRS_SLURM_RUN_DIR:-/run/mfrs-slurm}"  # pid files
MFRS_SLURM_SPOOL_DIR="${MFRS_SLURM_SPOOL_DIR:-/var/spool/mfrs-slurm}"  # wiped at every start
MFRS_SLURM_LOG_DIR="${MFRS_SLURM_LOG_DIR:-/var/log/mfrs-slurm}"
MFRS_SLURM_CPUS="${MFRS_SLURM_CPUS:-8}"                      # advertised, may exceed the real count
MFRS_SLURM_TIMEOUT="${MFRS_SLURM_TIMEOUT:-60}"               # seconds to wait for start/stop

MUNGE_PID_FILE=/run/munge/munged.pid
MUNGE_LOG_FILE=/var/log/munge/munged.log
SLURMCTLD_PID_FILE="$MFRS_SLURM_RUN_DIR/slurmctld.pid"
SLURMD_PID_FILE="$MFRS_SLURM_RUN_DIR/slurmd.pid"

# Clients (sinfo, sbatch) must read the same config as the daemons.
export SLURM_CONF="$MFRS_SLURM_CONF_DIR/slurm.conf"

log() { echo "slurm-local: $*"; }
die() { echo "slurm-local: ERROR: $*" >&2; exit 1; }

# pid_alive PIDFILE NAME: true when PIDFILE names a live (non-zombie) process
# whose command is NAME. A stopped daemon can linger as a zombie here (no init
# reaping), so kill -0 alone is not a test; the comm check guards against a
# stale pid file whose pid was reused by another program.
pid_alive() {
    local pidfile=$1 name=$2 pid state comm
    [ -r "$pidfile" ] || return 1
    # 2> first: the daemon may remove its pid file between the test and the read.
    pid=$(tr -dc '0-9' 2>/dev/null <"$pidfile") || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [ "$comm" = "$name" ] || return 1
    state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != "Z" ] && [ "$state" != "X" ]
}

require_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it starts munged, slurmctld and slurmd); try: sudo $0"
}

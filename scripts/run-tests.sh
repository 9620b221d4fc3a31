#!/usr/bin/env bash
# Run the whole test suite: start the local single-node SLURM (as root), run pytest, stop SLURM.
set -uo pipefail
VENV=${VENV:-.venv}
started_slurm=0
if [ "$(id -u)" = "0" ]; then
    if bash cluster/slurm-local-start.sh; then started_slurm=1; else
        echo "run-tests: the local SLURM did not start; the slurm tests will fail and say why" >&2
    fi
else
    echo "run-tests: not root, so the local SLURM is not started; start it as root (cluster/slurm-local-start.sh)" >&2
fi
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
status=$?
if [ "$started_slurm" = 1 ] && [ "${MFRS_KEEP_SLURM:-0}" != 1 ]; then bash cluster/slurm-local-stop.sh || true; fi
exit $status

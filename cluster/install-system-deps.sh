#!/usr/bin/env bash
# Install the Debian packages a single-node SLURM needs (slurmctld, slurmd,
# slurm-client, munge), and the headless Chromium (chromium, chromium-driver) that
# the report test opens the HTML report in. Idempotent: a fast no-op when they are all present.
#
# Usage: cluster/install-system-deps.sh        (as root, Debian 12)
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge chromium chromium-driver)

missing=()
for pkg in "${PACKAGES[@]}"; do
    # dpkg -s succeeds for removed-but-configured packages too; check the status line.
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: already installed: ${PACKAGES[*]}"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-system-deps: run as root:" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends ${PACKAGES[*]}" >&2
    echo "  or: sudo $0" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: apt-get not found; this script supports Debian/Ubuntu only." >&2
    echo "install-system-deps: install ${missing[*]} (Slurm >= 22.05 and munge) with your package manager." >&2
    exit 1
fi

echo "install-system-deps: missing: ${missing[*]}; running apt-get update"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
echo "install-system-deps: installing: ${PACKAGES[*]}"
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
echo "install-system-deps: installed: ${missing[*]}"

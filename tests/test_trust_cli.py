"""Clear ends and a closed door, as a user and a scheduler see them (issue 10): the run lock, SIGTERM,
a cluster without workers, a loopback-only local cluster, catalog variables."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from tests_support import MFRS, REPO, run_mfrs

from mfrs.catalog import load_catalog
from mfrs.errors import CatalogError, RunLockedError
from mfrs.lock import LOCK_NAME, data_root_lock


def _hold_lock(root) -> subprocess.Popen:
    """Another process holding the data root's lock, as a running `mfrs run` would."""
    code = ("import sys, time\nfrom mfrs.lock import data_root_lock\n"
            f"with data_root_lock({str(root)!r}, command='run demo'):\n"
            "    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_the_same_data_root_is_refused_with_who_holds_it(tmp_path):
    holder = _hold_lock(tmp_path)
    try:
        proc = run_mfrs("run", "demo", "--stages", "stimuli", root=tmp_path, check=False)
        assert proc.returncode == 5
        assert proc.stderr.startswith(f"error: data root {tmp_path} is in use by another mfrs run (pid {holder.pid} ")
        assert "mfrs run demo" in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "stimuli.zarr").exists()  # nothing was done twice
    finally:
        holder.kill()
        holder.wait()
    with data_root_lock(tmp_path, command="x"):  # a killed holder leaves no stale lock
        with pytest.raises(RunLockedError):
            with data_root_lock(tmp_path, command="y"):
                pass
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_sigterm_exits_143_with_a_message_and_releases_the_lock(tmp_path):
    env = {**os.environ, "MFRS_DATA_ROOT": str(tmp_path), "COLUMNS": "200"}
    proc = subprocess.Popen([*MFRS, "run", "demo", "--stages", "stimuli"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while (tmp_path / LOCK_NAME).stat().st_size == 0 if (tmp_path / LOCK_NAME).exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None, "the run never took its lock"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err
    assert (tmp_path / LOCK_NAME).read_text() == ""
    with data_root_lock(tmp_path, command="after"):
        pass


def test_a_cluster_without_workers_fails_with_exit_3_in_one_line(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as cluster:
        proc = run_mfrs("run", "demo", "--stages", "stimuli", "--cluster", cluster.scheduler_address,
                        root=tmp_path, check=False, env={"DASK_MFRS__NO_WORKER_TIMEOUT": "3s"}, timeout=300)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no worker for 3 s" in lines[0] and "rerun to resume" in lines[0]


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def test_the_local_cluster_is_closed_to_other_addresses(local_client):
    from urllib.parse import urlparse

    ip = _non_loopback_address()
    assert ip is not None, "this machine has no non-loopback IPv4 address to test from"
    addresses = [local_client.scheduler.address, *local_client.scheduler_info(n_workers=-1)["workers"]]
    for addr in addresses:
        parsed = urlparse(addr)
        assert parsed.hostname == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", parsed.port), timeout=5):
            pass  # reachable on loopback
        with pytest.raises(OSError):
            socket.create_connection((ip, parsed.port), timeout=5).close()


def test_catalog_paths_expand_only_mfrs_variables_and_empty_is_unset(tmp_path, monkeypatch):
    cat = tmp_path / "cat.yaml"
    cat.write_text("root: ${HOME}\nentries:\n  x: {kind: zarr, location: x.zarr}\n")
    with pytest.raises(CatalogError, match=r"\$\{HOME\} is not allowed in catalog paths; only MFRS_\*"):
        load_catalog(cat)
    monkeypatch.setenv("MFRS_DATA_ROOT", "")
    catalog = load_catalog(REPO / "data_catalog.yaml")
    assert catalog.root == REPO / ".mfrs-data"  # the default, not the repository itself

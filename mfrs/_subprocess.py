"""The one door to the shell: every external command (sbatch, squeue, git) goes through here."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence

log = logging.getLogger(__name__)

__all__ = ["run_command", "CommandError"]


class CommandError(RuntimeError):
    """An external command failed; the message carries its exit code, stdout and stderr."""


def run_command(cmd: Sequence[str], *, check: bool = True, timeout: float | None = 120,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``, log it, and raise :class:`CommandError` with its output on failure.

    Parameters
    ----------
    cmd : sequence of str
        The command and its arguments (no shell).
    check : bool
        Raise on a non-zero exit code.
    timeout : float, optional
        Seconds before the command is killed.
    input : str, optional
        Text sent to the command's standard input.
    """
    log.debug("running: %s", " ".join(cmd))
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input)
    except FileNotFoundError as exc:
        raise CommandError(f"Command not found: {cmd[0]!r} (command: {' '.join(cmd)})") from exc
    if check and proc.returncode != 0:
        raise CommandError(
            f"Command failed.\nExit code: {proc.returncode}\nCommand: {' '.join(cmd)}\n"
            f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
        )
    return proc

"""The supervisor's control socket works from any state directory an operator (or a test) picks."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from hub import supervise
from onelab.settings import load


def _settings(state: Path):
    return load(path=None, environ={"ONELAB_STATE_DIR": str(state)})


def test_a_short_state_directory_keeps_its_socket_inside(tmp_path):
    s = _settings(tmp_path / "st")
    assert supervise.paths(s).sock == tmp_path / "st" / "supervisor" / "supervisor.sock"


def test_a_deep_state_directory_gets_a_socket_that_binds_and_is_its_own(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "state"
    other = tmp_path / ("d" * 60) / ("f" * 60) / "state"
    sock = supervise.paths(_settings(deep)).sock
    assert len(os.fsencode(sock)) <= supervise.SOCKET_MAX
    assert sock != supervise.paths(_settings(other)).sock
    assert sock == supervise.paths(_settings(deep)).sock  # the CLI finds the same one later
    supervise._private_dir(sock.parent)
    assert sock.parent.stat().st_mode & 0o777 == 0o700
    with socket.socket(socket.AF_UNIX) as s:  # the length the kernel takes
        s.bind(str(sock))
    sock.unlink()


def test_a_grading_container_whose_manager_died_is_not_used(tmp_path):
    """A killed hub's formgrader container still runs (with its ready mark) until the new
    manager replaces it: an operator's command waits for the new one instead of being killed
    half way (exit 137) in the old."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from hub import formgrader

    def ctr(pid):
        return SimpleNamespace(labels={} if pid is None else {formgrader.MANAGER_LABEL: str(pid)})

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             "hub.formgrader"])
    try:
        for _ in range(100):  # until the new process has its command line
            if b"hub.formgrader" in Path(f"/proc/{live.pid}/cmdline").read_bytes():
                break
            time.sleep(0.05)
        assert formgrader.managed(ctr(live.pid))
    finally:
        live.kill()
        live.wait()
    assert not formgrader.managed(ctr(live.pid))  # gone
    assert not formgrader.managed(ctr(os.getpid()))  # alive, but no manager (a reused pid)
    assert formgrader.managed(ctr(None))  # started before managers were labelled

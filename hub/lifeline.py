"""What the hub's managed services (the exchange, each formgrader manager) need to live and die
with the hub that started them.

A hub killed with SIGKILL cannot stop its services; left running, they would hold their ports
against the services of the next hub (which supervisord starts at once), and that hub gives up
when a service of its own cannot start. So each service asks the kernel for SIGTERM when its
parent dies (``PR_SET_PDEATHSIG``) and ends as on any stop; and since the old one may still be
letting go of its port when the new one starts, binding waits a little for it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import TypeVar

PR_SET_PDEATHSIG = 1
T = TypeVar("T")


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Get ``sig`` when the parent (the hub) dies; exit now if it died already."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent == 1 or os.getppid() != parent:  # orphaned before the request took effect
        sys.exit(f"{sys.argv[0]}: the hub that started this service is gone")


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def bind_patiently(bind: Callable[[], T], timeout: float = 20) -> T:
    """``bind()``, retried while its address is in use (a predecessor still letting go of it),
    for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return bind()
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)

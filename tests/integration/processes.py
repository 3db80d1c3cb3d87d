"""The bridge and collector subprocesses the integration tests start, kill and stop.

Tests run them as processes rather than in-process so that a test can SIGKILL one mid-flight
(the crash exactly-once must survive) or SIGTERM it and check it shuts down cleanly.
"""

from __future__ import annotations

import signal
import socket
import subprocess

# A SIGKILLed process is gone at once; this only bounds waiting for the kernel to reap it.
REAP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: a crash, no shutdown code runs and nothing in flight is finished."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(REAP_TIMEOUT_S)


def terminate(proc: subprocess.Popen[bytes], timeout: float, *,
              raise_if_hung: bool = False) -> int:
    """SIGTERM and wait for the exit code (0 after a clean shutdown).

    A process still running after ``timeout`` is SIGKILLed, so none outlives its test; its
    negative exit code is then returned, or with ``raise_if_hung`` the TimeoutExpired raised.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(REAP_TIMEOUT_S)
            if raise_if_hung:
                raise
    return int(proc.returncode)

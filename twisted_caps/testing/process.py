# -*- test-case-name: tests.test_testing -*-
"""
A caps server in a child process, for tests whose body blocks (a blocking
socket client, a subprocess) and so cannot let this process's reactor run.

The child is C{python -m twisted_caps.testing [twistd caps options]}: it
listens on loopback and free ports, prints one C{caps: serving KIND on
HOST:PORT} line per listener and then C{caps: ready}, and stops on SIGTERM
or when its standard input closes (so it never outlives the test process).
"""

import os
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass

from twisted_caps.testing.address import CapsAddress
from twisted_caps.testing.options import OptionValue, option_words

READY = "caps: ready"
#: Seconds a child may take to listen; generous for a loaded CI machine.
STARTUP_TIMEOUT = 30.0
SERVING = re.compile(r"caps: serving (TCP|UDP) on (?:\[([^\]]+)\]|([^:\s]+)):(\d+)")


def serving_line(kind: str, host: str, port: int) -> str:
    """The line the child prints for a listener (IPv6 hosts in brackets)."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"caps: serving {kind} on {address}"


@dataclass
class CapsServerProcess(CapsAddress):
    """A caps server running as a child process; L{stop} ends it."""

    process: "subprocess.Popen[bytes]"

    def stop(self, timeout: float = 10.0) -> int | None:
        """
        SIGTERM, then SIGKILL after C{timeout} seconds. Return the exit
        status as C{Popen} gives it: C{-15} after a clean stop on SIGTERM.
        """
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        return process.returncode


def start_caps_process(*argv: str, **options: OptionValue) -> CapsServerProcess:
    """
    Start a caps server process with C{twistd caps} options (see
    L{caps_argv}) and wait until it listens. The caller must L{CapsServerProcess.stop} it.

    @raise RuntimeError: with the child's output, if it exits (bad options,
        a port in use) or is not ready within L{STARTUP_TIMEOUT} seconds.
    """
    command = [sys.executable, "-m", "twisted_caps.testing", *argv, *option_words(**options)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    output = _read_until_ready(process, STARTUP_TIMEOUT)
    listeners: dict[str, tuple[str, int]] = {}
    for match in SERVING.finditer(output):
        kind, v6, host, port = match.groups()
        listeners.setdefault(kind, (v6 or host, int(port)))
    server = CapsServerProcess(
        (listeners.get("TCP") or listeners.get("UDP") or ("127.0.0.1", 0))[0],
        listeners["TCP"][1] if "TCP" in listeners else None,
        listeners["UDP"][1] if "UDP" in listeners else None,
        process,
    )
    if READY not in output:
        server.stop()
        raise RuntimeError(f"the caps server did not start: {' '.join(command)}\n{output}")
    return server


def _read_until_ready(process: "subprocess.Popen[bytes]", timeout: float) -> str:
    """Read the child's output until it is ready, exits, or time is up."""
    assert process.stdout is not None
    output = b""
    deadline = time.monotonic() + timeout
    while READY.encode() not in output:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
            break
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        output += chunk
    return output.decode(errors="replace")

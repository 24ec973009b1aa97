"""
Run the benchmark in a network namespace of its own.

Loopback connection churn is capped by ephemeral ports and TIME_WAIT, not by
the server (about 14k connections/s for every server with the default
32768-60999 port range). A private namespace has its own loopback and its
own TCP settings, so the benchmark widens the port range and lets a client
reuse a TIME_WAIT port after one second, without touching the host's
settings and without the host's other traffic in the way.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

MARKER = "CAPS_BENCH_NETNS"
#: Per-namespace settings that lift the churn cap to about 64k connections/s.
SYSCTLS = {
    "net/ipv4/ip_local_port_range": "1024 65535",
    "net/ipv4/tcp_tw_reuse": "1",
}


def inside() -> bool:
    """Whether this process is the one re-executed in the private namespace."""
    return os.environ.get(MARKER) == "1"


def reexec_inside(argv: list[str], module: str = "bench") -> None:
    """
    Replace this process with C{python -m MODULE ARGV} under C{unshare -n},
    if this user may create network namespaces (root, usually); otherwise
    return.
    """
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        print("bench: unshare or ip is missing; churn is port-capped", file=sys.stderr)
        return
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        print(
            "bench: no private network namespace (needs root); churn is port-capped",
            file=sys.stderr,
        )
        return
    os.environ[MARKER] = "1"
    os.execv(unshare, [unshare, "-n", "--", sys.executable, "-m", module, *argv])


def prepare() -> None:
    """Bring up the namespace's loopback and apply the churn settings."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for key, value in SYSCTLS.items():
        Path("/proc/sys", key).write_text(value)

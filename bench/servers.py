"""
The servers under test: how to build and start each one on loopback, pinned
to the server core, and how to stop it.

Every server logs C{serving TCP on 127.0.0.1:PORT} and the same for UDP, as
C{twistd caps} does, so one parser finds the ports of all of them.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SERVING = re.compile(rb"serving (TCP|UDP) on 127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class ServerSpec:
    """
    One server of the comparison.

    @ivar command: builds the command line, given the folder of compiled
        programs; returns a reason string instead when the server cannot
        run here (an option not built yet, a module not installed).
    """

    name: str
    title: str
    command: Callable[[Path], list[str] | str]


@dataclass
class RunningServer:
    """A started server: its process, its ports and its log file."""

    spec: ServerSpec
    process: subprocess.Popen[bytes]
    tcp_port: int
    udp_port: int
    log: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after five seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


#: The per-client limits are off: the load generator is one client address
#: opening 5,000 connections and sending far more than 5,000 datagrams a
#: second, which the defaults (rightly) refuse; no other server has limits.
LIMITS_OFF = ("--max-per-peer", "0", "--udp-rate", "0")


def twistd_caps(*extra: str) -> list[str]:
    """C{twistd caps} as users run it, in the foreground, on free ports, limits off."""
    twistd = str(BIN / "twistd")
    return [twistd, "-n", "--pidfile=", "caps", "-i", "127.0.0.1", "-p", "0", *LIMITS_OFF, *extra]


def caps_with_workers(build: Path) -> list[str] | str:
    """C{twistd caps --workers 2}, once the option exists."""
    help_text = subprocess.run(twistd_caps("--help"), capture_output=True, check=False).stdout
    if b"--workers" not in help_text:
        return "twistd caps has no --workers option yet"
    return twistd_caps("--workers", "2")


def uvloop_server(build: Path) -> list[str] | str:
    """The asyncio server on uvloop, if uvloop is installed."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "uvloop is not installed (pip install -e '.[bench]')"
    return [sys.executable, str(HERE / "asyncio_server.py"), "--uvloop"]


SERVERS = (
    ServerSpec("caps", "twisted-caps", lambda build: twistd_caps()),
    ServerSpec("caps-workers", "caps --workers 2", caps_with_workers),
    ServerSpec(
        "caps-metrics",
        "caps --metrics",
        lambda build: twistd_caps("--metrics", "tcp:0:interface=127.0.0.1"),
    ),
    ServerSpec(
        "twisted", "bare Twisted", lambda build: [sys.executable, str(HERE / "bare_twisted.py")]
    ),
    ServerSpec(
        "asyncio", "asyncio", lambda build: [sys.executable, str(HERE / "asyncio_server.py")]
    ),
    ServerSpec("uvloop", "uvloop", uvloop_server),
    ServerSpec(
        "python",
        "Python floor",
        lambda build: [sys.executable, str(HERE / "python_floor.py")],
    ),
    ServerSpec("c", "C epoll", lambda build: [str(build / "epoll_server")]),
)


def compile_programs(build: Path) -> None:
    """Compile the C server and the load generator into C{build} with C{cc}."""
    compiler = shutil.which("cc")
    if compiler is None:
        raise SystemExit("bench: a C compiler (cc) is needed to build the load generator")
    for name in ("epoll_server", "loadgen"):
        subprocess.run(
            [compiler, "-O2", "-Wall", "-o", str(build / name), str(HERE / f"{name}.c")],
            check=True,
        )


def pinned(command: list[str], cores: Collection[int] | None) -> list[str]:
    """Prefix C{command} with C{taskset} so it runs on C{cores} only."""
    if cores is None:
        return command
    return ["taskset", "-c", ",".join(map(str, sorted(cores))), *command]


def start(spec: ServerSpec, command: list[str], cores: Collection[int] | None) -> RunningServer:
    """Start a server, wait (up to 30 s) until it logs both ports."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{spec.name}-", suffix=".log")[1])
    with log.open("wb") as output:
        process = subprocess.Popen(
            pinned(command, cores),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        ports = {kind.decode(): int(port) for kind, port in SERVING.findall(log.read_bytes())}
        if {"TCP", "UDP"} <= set(ports):
            return RunningServer(spec, process, ports["TCP"], ports["UDP"], log)
        time.sleep(0.05)
    RunningServer(spec, process, 0, 0, log).stop()
    raise RuntimeError(f"{spec.title} did not start: {log.read_text(errors='replace')}")


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (C{--workers} servers have several)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text()
                pending.extend(int(child) for child in children.split())
        except FileNotFoundError:
            continue
        found.append(current)
    return found


def set_tree_affinity(pid: int, cores: Collection[int]) -> None:
    """Let every thread of a process and its descendants run on C{cores} only."""
    for member in process_tree(pid):
        with contextlib.suppress(FileNotFoundError):
            for thread in os.listdir(f"/proc/{member}/task"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(int(thread), cores)


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    total = 0
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def stat_cpu_ticks(stat: str) -> tuple[int, int]:
    """
    The user and system CPU time in a C{/proc/PID/stat} line, in clock
    ticks (its 14th and 15th fields; the 2nd, the command's name in
    parentheses, may hold spaces and parentheses of its own).
    """
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def tree_cpu_split(pid: int) -> tuple[float, float]:
    """
    User and system CPU time used so far by a process and its descendants:
    the server's own code against the kernel's work for it.
    """
    user = system = 0
    for member in process_tree(pid):
        member_user, member_system = stat_cpu_ticks(Path(f"/proc/{member}/stat").read_text())
        user += member_user
        system += member_system
    ticks = os.sysconf("SC_CLK_TCK")
    return user / ticks, system / ticks


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far by a process and its descendants."""
    return sum(tree_cpu_split(pid))

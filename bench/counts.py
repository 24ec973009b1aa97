"""
C{python -m bench.counts}: system calls and Python calls per connection
(churn) and per message (request/response on 100 connections), for
twisted-caps, uvloop and the C epoll server.

Counts, unlike rates, hardly depend on what else the machine is doing, so
they compare servers (and two versions of one) on a busy machine. Each
server is started pinned to one core as in the benchmark and driven by
its load generator from the other; C{strace -c -f} counts the system calls
of the server's whole process tree while it runs, and a second run under
cProfile (C{twistd --profile}, C{python -m cProfile}) counts the Python
calls, less those of a run of the same server that served nothing.
Each count is divided by the connections (or messages) answered.

A traced server runs far slower than an untraced one, and a slower server
finds more work waiting at each wake-up: the C{epoll_wait} figures are
the ones that depend on the pace (fewer per connection when busier).

With C{--instructions}, a third run under valgrind's callgrind counts the
instructions the server runs in user space (L{bench.instructions}).
"""

import argparse
import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import instructions, netns, servers, workloads

#: The system calls the table shows, in its order; the rest are summed.
SHOWN = (
    "accept4",
    "epoll_ctl",
    "epoll_wait",
    "recvfrom",
    "read",
    "sendto",
    "write",
    "close",
    "shutdown",
    "setsockopt",
    "getsockopt",
)
#: Counted on request only: the course's own server behaviour.
ONCE = servers.ServerSpec(
    "caps-once", "twisted-caps --once", lambda build: servers.twistd_caps("--once")
)
#: The servers counted by default, and the workloads.
DEFAULT_SERVERS = "caps,uvloop,c"
DEFAULT_WORKLOADS = "churn,rr100"
STRACE_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.counts", description=__doc__)
    parser.add_argument(
        "--servers", default=DEFAULT_SERVERS, help="of bench's, and caps-once; %(default)s"
    )
    parser.add_argument("--workloads", default=DEFAULT_WORKLOADS, help="default: %(default)s")
    parser.add_argument("--seconds", type=float, default=2.0, help="load per count")
    parser.add_argument("--no-profile", action="store_true", help="system calls only")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also user-space instructions, under valgrind's callgrind",
    )
    parser.add_argument("--no-netns", action="store_true", help="stay in this network namespace")
    return parser.parse_args(argv)


def strace_counts(output: str) -> dict[str, int]:
    """The calls per system call in a C{strace -c} summary."""
    counts: dict[str, int] = {}
    for line in output.splitlines():
        match = STRACE_LINE.match(line)
        if match and match.group(3) != "total":
            counts[match.group(3)] = int(match.group(1))
    return counts


def traced(
    server: servers.RunningServer, workload: workloads.Workload, build: Path, seconds: float
) -> tuple[dict[str, int], float]:
    """Run C{workload} under C{strace -c -f}; return the calls and the operations done."""
    summary = Path(tempfile.mkstemp(prefix="bench-strace-")[1])
    pids = [str(pid) for pid in servers.process_tree(server.process.pid)]
    command = ["strace", "-c", "-f", "-o", str(summary)]
    for pid in pids:
        command += ["-p", pid]
    tracer = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        _wait_attached(tracer, len(pids))
        counts = run(workload, server, build, seconds)
        _wait_idle(server.process.pid)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
    calls = strace_counts(summary.read_text())
    summary.unlink()
    return calls, counts["ops"]


def _wait_attached(tracer: subprocess.Popen[bytes], processes: int) -> None:
    """Wait (up to 10 s) until C{strace} says it has attached to every process."""
    assert tracer.stderr is not None
    os.set_blocking(tracer.stderr.fileno(), False)
    seen = b""
    deadline = time.monotonic() + 10
    while seen.count(b"attached") < processes:
        if time.monotonic() > deadline or tracer.poll() is not None:
            raise RuntimeError(f"strace did not attach: {seen!r}")
        seen += tracer.stderr.read() or b""
        time.sleep(0.05)


def _wait_idle(pid: int) -> None:
    """
    Wait (up to 10 s) until the traced server has used no CPU for 0.2 s: it
    may still be closing the last connections its load generator left.
    """
    deadline = time.monotonic() + 10
    used = servers.tree_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = servers.tree_cpu_seconds(pid)
        if now == used:
            return
        used = now


def run(
    workload: workloads.Workload, server: servers.RunningServer, build: Path, seconds: float
) -> dict[str, float]:
    """Drive C{server}, the load generator on core 1, checking every reply."""
    counts = workloads.run(workload, server, build, seconds, (1,))
    if counts["bad"] or counts["errors"]:
        raise RuntimeError(f"{server.spec.title}: wrong replies or errors: {counts}")
    return counts


def driver(
    workload: workloads.Workload, build: Path, args: argparse.Namespace
) -> Callable[[servers.RunningServer], float]:
    """What drives a server through C{workload} for a count: the operations it answered."""

    def drive(server: servers.RunningServer) -> float:
        return run(workload, server, build, args.seconds)["ops"]

    return drive


def profiled_command(spec: servers.ServerSpec, build: Path, output: Path) -> list[str] | None:
    """The server's command under cProfile, writing C{output}; None for the C server."""
    command = spec.command(build)
    if isinstance(command, str):
        return None
    program, *rest = command
    if program.endswith("twistd"):
        return [program, f"--profile={output}", "--profiler=cprofile", "--savestats", *rest]
    if program == sys.executable:
        return [program, "-m", "cProfile", "-o", str(output), *rest]
    return None


def python_calls(
    spec: servers.ServerSpec, workload: workloads.Workload | None, build: Path, seconds: float
) -> tuple[int, float] | None:
    """Python function calls of a profiled run of C{spec} (none: start and stop only)."""
    output = Path(tempfile.mkstemp(prefix="bench-profile-")[1])
    command = profiled_command(spec, build, output)
    if command is None:
        return None
    server = servers.start(spec, command, (0,))
    try:
        ops = run(workload, server, build, seconds)["ops"] if workload else 0.0
    finally:
        server.stop()
        server.log.unlink()
    total = pstats.Stats(str(output)).total_calls  # type: ignore[attr-defined]
    output.unlink()
    return int(total), ops


def main(argv: list[str]) -> int:
    """Count and print one Markdown table per workload."""
    args = parse(argv)
    if not args.no_netns and not netns.inside():
        netns.reexec_inside(argv, module="bench.counts")
    if netns.inside():
        netns.prepare()
    os.sched_setaffinity(0, {1})
    chosen = [s for s in (*servers.SERVERS, ONCE) if s.name in args.servers.split(",")]
    timed = {w.name: w for w in workloads.workloads(1)}
    with tempfile.TemporaryDirectory(prefix="bench-") as build_dir:
        build = Path(build_dir)
        servers.compile_programs(build)
        for name in args.workloads.split(","):
            workload = timed[name]
            unit = "connection" if workload.mode == "churn" else "message"
            print(f"\n{workload.title}: calls per {unit}\n")
            header = ["server", *SHOWN, "other", "Python calls", "user instructions"]
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
            for spec in chosen:
                command = spec.command(build)
                if isinstance(command, str) or (spec is ONCE and workload.mode != "churn"):
                    continue  # not installed; or a server that closes after one reply
                server = servers.start(spec, command, (0,))
                try:
                    calls, ops = traced(server, workload, build, args.seconds)
                finally:
                    server.stop()
                    server.log.unlink()
                shown = [calls.get(c, 0) / ops for c in SHOWN]
                other = sum(n for c, n in calls.items() if c not in SHOWN) / ops
                python = "-"
                if not args.no_profile:
                    loaded = python_calls(spec, workload, build, args.seconds)
                    idle = python_calls(spec, None, build, args.seconds)
                    if loaded and idle:
                        python = f"{(loaded[0] - idle[0]) / loaded[1]:.1f}"
                counted = "-"
                if args.instructions:
                    per_op = instructions.per_operation(spec, build, driver(workload, build, args))
                    counted = "-" if per_op is None else f"{per_op:,.0f}"
                cells = [spec.title, *(f"{n:.2f}" for n in shown), f"{other:.2f}", python, counted]
                print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

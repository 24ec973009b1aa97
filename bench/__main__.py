"""
C{python -m bench [--quick] [--json FILE] [--servers a,b] [--rounds N]}: benchmark every
server under every workload in one run and print the tables.
"""

import argparse
import json
import os
import platform
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

from bench import interleave, netns, report, servers

SERVER_CORE, LOAD_CORE = 0, 1


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run (under a minute)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--servers",
        default=",".join(spec.name for spec in servers.SERVERS),
        help="comma-separated subset of: %(default)s",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="interleaved rounds of 0.6 s; each result is its best round (default: %(default)s)",
    )
    parser.add_argument("--no-netns", action="store_true", help="stay in this network namespace")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    unknown = set(args.servers.split(",")) - {spec.name for spec in servers.SERVERS}
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args


def machine(cores: tuple[int, int] | None, in_netns: bool) -> dict[str, Any]:
    """What the run ran on, so results from two runs can be compared fairly."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pinning": f"server on core {cores[0]}, load on core {cores[1]}" if cores else "none",
        "network_namespace": in_netns,
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def raise_file_limit() -> None:
    """Allow as many sockets as the hard limit; servers started here inherit it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def terminate(signum: int, frame: object) -> NoReturn:
    """Turn SIGTERM into an exit that runs the cleanups (servers get stopped)."""
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    """Run the benchmark; exit status 1 if any reply was wrong."""
    args = parse(argv)
    if not args.no_netns and not netns.inside():
        netns.reexec_inside(argv)
    if netns.inside():
        netns.prepare()
    signal.signal(signal.SIGTERM, terminate)
    raise_file_limit()
    every_core = os.sched_getaffinity(0)
    cores = (SERVER_CORE, LOAD_CORE) if len(every_core) >= 2 else None
    if cores:
        os.sched_setaffinity(0, {LOAD_CORE})
    seconds, rounds = (0.2, 1) if args.quick else (0.6, args.rounds)
    chosen = [spec for spec in servers.SERVERS if spec.name in args.servers.split(",")]
    results: dict[str, Any] = {"machine": machine(cores, netns.inside()), "quick": args.quick}
    results["seconds_per_round"] = seconds
    results["rounds"] = rounds
    with tempfile.TemporaryDirectory(prefix="bench-") as build_dir:
        build = Path(build_dir)
        servers.compile_programs(build)
        idle = 300 if args.quick else 5000
        results["servers"] = interleave.run_all(
            chosen, build, seconds, rounds, idle, cores, every_core
        )
    print(report.tables(results))
    print()
    print(report.targets(results))
    print()
    print(report.correctness(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    wrong = sum(
        c["bad"] + c["errors"]
        for s in results["servers"].values()
        for c in s.get("workloads", {}).values()
    )
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

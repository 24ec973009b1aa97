"""
C{python -m bench.workers}: how C{twistd caps --workers N} scales with
cores, for N of 1, 2, 4, 8 and 16, on a machine with cores to spare.

The machine's cores are split in two: the server's (as many as the most
workers asked for, at most half of them) and the load's, where one load
generator runs pinned to each core, every one connecting from its own
loopback address (127.0.0.2, .3, ...) so that churn is not capped by one
address's ports. For each N, C{twistd caps --workers N} (one process for
N = 1, a parent and N workers above) runs on the server's cores and gets
churn (16 connections in flight per generator) and
request/response (100 connections per generator) in rounds; the best
round is kept, every reply of every round is checked. Printed: the
rates, the rate per server CPU-second, the parent's share of the server's
CPU (it relays the workers' log lines), and the resident memory of the
whole server, idle, before the load.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import netns, servers, workloads
from bench.__main__ import raise_file_limit
from twisted_caps.core.transform import capitalize

DEFAULT_WORKERS = "1,2,4,8,16"
#: Connections each load generator keeps, per workload.
PER_GENERATOR = {"churn": 16, "rr100": 100}


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--workers", default=DEFAULT_WORKERS, help="default: %(default)s")
    parser.add_argument("--seconds", type=float, default=2.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--no-netns", action="store_true", help="stay in this network namespace")
    return parser.parse_args(argv)


def split_cores(cores: list[int], most_workers: int) -> tuple[list[int], list[int]]:
    """The server's cores and the load's: the server gets at most half."""
    if len(cores) < 2:
        raise SystemExit("bench.workers: needs at least 2 cores")
    server = min(most_workers, len(cores) // 2)
    return cores[:server], cores[server:]


def start(workers: int, server_cores: list[int]) -> servers.RunningServer:
    """C{twistd caps --workers N} (one process for 1), its whole tree on C{server_cores}."""
    title = f"caps --workers {workers}"
    spec = servers.ServerSpec(f"workers-{workers}", title, lambda build: [])
    server = servers.start(spec, servers.twistd_caps("--workers", str(workers)), server_cores)
    ready = 0 if workers == 1 else workers
    deadline = time.monotonic() + 60
    while server.log.read_bytes().count(b"caps: ready") < ready:
        if time.monotonic() > deadline or server.process.poll() is not None:
            server.stop()
            raise RuntimeError(f"{title}: its workers did not all start")
        time.sleep(0.1)
    servers.set_tree_affinity(server.process.pid, server_cores)
    return server


def drive(
    server: servers.RunningServer, build: Path, workload: str, seconds: float, load: list[int]
) -> dict[str, float]:
    """One round: a load generator per load core at once; the counts summed."""
    request = build / "request"
    expect = build / "expect"
    request.write_bytes(workloads.MESSAGE)
    expect.write_bytes(capitalize(workloads.MESSAGE))
    count = str(PER_GENERATOR[workload])
    if workload == "churn":
        mode = ["churn", str(server.tcp_port), count]
    else:
        mode = ["tcp", str(server.tcp_port), count, "1"]
    command = [str(build / "loadgen"), *mode, str(seconds), str(request), str(expect)]
    pid = server.process.pid
    tree_before, parent_before = servers.tree_cpu_seconds(pid), own_cpu_seconds(pid)
    generators = [
        subprocess.Popen(
            servers.pinned(command, [core]),
            stdout=subprocess.PIPE,
            env={**os.environ, "LOADGEN_SOURCE": f"127.0.0.{2 + index}"},
        )
        for index, core in enumerate(load)
    ]
    results = [json.loads(g.communicate(timeout=seconds + 30)[0]) for g in generators]
    tree_cpu = servers.tree_cpu_seconds(pid) - tree_before
    parent_cpu = own_cpu_seconds(pid) - parent_before
    total = {key: sum(r[key] for r in results) for key in ("ops", "bad", "errors")}
    elapsed = max(r["seconds"] for r in results)
    total["rate"] = total["ops"] / elapsed
    total["per_cpu_second"] = total["ops"] / tree_cpu if tree_cpu else 0.0
    total["parent_share"] = parent_cpu / tree_cpu if tree_cpu else 0.0
    total["server_cores_busy"] = tree_cpu / elapsed
    return total


def own_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    workers: int, build: Path, args: argparse.Namespace, server_cores: list[int], load: list[int]
) -> dict[str, Any]:
    """Every round of every workload for one server; the best round of each."""
    server = start(workers, server_cores)
    try:
        result: dict[str, Any] = {"rss_mib": servers.tree_rss_kib(server.process.pid) / 1024}
        for workload in PER_GENERATOR:
            rounds = [
                drive(server, build, workload, args.seconds, load) for _ in range(args.rounds)
            ]
            best = dict(max(rounds, key=lambda counts: counts["rate"]))
            best["bad"] = sum(r["bad"] for r in rounds)
            best["errors"] = sum(r["errors"] for r in rounds)
            result[workload] = best
    finally:
        server.stop()
        server.log.unlink()
    return result


def table(results: dict[str, dict[str, Any]], server_cores: list[int], load: list[int]) -> str:
    """The results as one Markdown table."""
    lines = [
        f"server on {len(server_cores)} cores, {len(load)} load generators, one per core",
        "",
        "| server | churn, conn/s | per server CPU-s | parent share | server cores busy"
        " | req/resp, msg/s | per server CPU-s | parent share | RSS idle, MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for title, result in results.items():
        churn, rr = result["churn"], result["rr100"]
        # One worker is one process: no parent to speak of.
        alone = title == "--workers 1"
        churn_parent = "-" if alone else f"{churn['parent_share']:.1%}"
        rr_parent = "-" if alone else f"{rr['parent_share']:.1%}"
        lines.append(
            f"| {title} | {churn['rate']:,.0f} | {churn['per_cpu_second']:,.0f}"
            f" | {churn_parent} | {churn['server_cores_busy']:.2f}"
            f" | {rr['rate']:,.0f} | {rr['per_cpu_second']:,.0f} | {rr_parent}"
            f" | {result['rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Measure every number of workers; exit status 1 if any reply was wrong."""
    args = parse(argv)
    if not args.no_netns and not netns.inside():
        netns.reexec_inside(argv, module="bench.workers")
    if netns.inside():
        netns.prepare()
    raise_file_limit()
    counts = [int(n) for n in args.workers.split(",")]
    server_cores, load = split_cores(sorted(os.sched_getaffinity(0)), max(counts))
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as build_dir:
        build = Path(build_dir)
        servers.compile_programs(build)
        for workers in counts:
            title = f"--workers {workers}"
            print(f"bench.workers: {title}", file=sys.stderr)
            results[title] = measure(workers, build, args, server_cores, load)
    print(table(results, server_cores, load))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    wrong = sum(r[w]["bad"] + r[w]["errors"] for r in results.values() for w in PER_GENERATOR)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""
Run every workload against every server in interleaved rounds.

All servers run at once (an idle one costs no CPU), and each round runs each
workload against each server in turn, so a burst of load from another
tenant of the machine hits one short slice of one server, not a whole
column. A server's result for a workload is its best round; wrong replies,
errors and losses are summed over all rounds.
"""

import sys
from pathlib import Path
from typing import Any

from bench import servers, workloads


def run_all(
    specs: list[servers.ServerSpec],
    build: Path,
    seconds: float,
    rounds: int,
    idle_connections: int,
    cores: tuple[int, int] | None,
) -> dict[str, Any]:
    """Start every server, measure it, stop it; return results by server name."""
    results: dict[str, Any] = {}
    running: dict[str, servers.RunningServer] = {}
    server_core, load_core = cores if cores else (None, None)
    try:
        for spec in specs:
            command = spec.command(build)
            if isinstance(command, str):
                print(f"bench: skipping {spec.title}: {command}", file=sys.stderr)
                results[spec.name] = {"title": spec.title, "skipped": command}
                continue
            running[spec.name] = servers.start(spec, command, server_core)
            results[spec.name] = {"title": spec.title, "workloads": {}, "rounds": {}}
        idle, *timed = workloads.workloads(idle_connections)
        for name, server in running.items():
            print(f"bench: {server.spec.title}: {idle.title}", file=sys.stderr)
            results[name]["workloads"]["idle"] = workloads.run(idle, server, build, 0, None)
        for number in range(rounds):
            for workload in timed:
                print(f"bench: round {number + 1}/{rounds}: {workload.title}", file=sys.stderr)
                for name, server in running.items():
                    counts = workloads.run(workload, server, build, seconds, load_core)
                    results[name]["rounds"].setdefault(workload.name, []).append(counts)
        for name in running:
            for workload_name, measured in results[name]["rounds"].items():
                results[name]["workloads"][workload_name] = best(measured)
    finally:
        for server in running.values():
            server.stop()
            server.log.unlink()
    return results


def best(measured: list[dict[str, float]]) -> dict[str, float]:
    """The fastest round, with the correctness counts of all rounds."""
    chosen = dict(max(measured, key=lambda counts: counts["bytes"] / counts["seconds"]))
    for key in ("bad", "errors", "lost"):
        chosen[key] = sum(counts[key] for counts in measured)
    chosen["checked"] = sum(counts["ops"] for counts in measured)
    return chosen

"""
Run every workload against every server in interleaved rounds.

All servers run at once (an idle one costs no CPU), and each round runs each
workload against each server in turn, so a burst of load from another
tenant of the machine hits one short slice of one server, not a whole
column. A server's result for a workload is its best round; wrong replies,
errors and losses are summed over all rounds, and so is its CPU time, user
and system, per operation.

Then the servers of L{SCALING} run request/response once more with every
core open to them and to the load generator, which is how C{--workers}
can show what a second core gives (pinned, it has one core like the rest).
"""

import os
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

from bench import servers, workloads

#: The servers measured again on every core: one worker, and two.
SCALING = ("caps", "caps-workers")
#: The workload of that measurement.
SCALING_WORKLOAD = "rr100"


def run_all(
    specs: list[servers.ServerSpec],
    build: Path,
    seconds: float,
    rounds: int,
    idle_connections: int,
    cores: tuple[int, int] | None,
    every_core: Collection[int],
) -> dict[str, Any]:
    """
    Start every server, measure it, stop it; return results by server name.

    C{cores} are the server's and the load generator's when pinned (None:
    not pinned); C{every_core} is what the machine lets this process use.
    """
    results: dict[str, Any] = {}
    running: dict[str, servers.RunningServer] = {}
    server_core, load_core = ((cores[0],), (cores[1],)) if cores else (None, None)
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
        scaling = {name: running[name] for name in SCALING if name in running}
        if cores and scaling:
            [workload] = [w for w in timed if w.name == SCALING_WORKLOAD]
            for number in range(rounds):
                print(f"bench: round {number + 1}/{rounds}: {workload.title}, every core",
                      file=sys.stderr)  # fmt: skip
                for name, server in scaling.items():
                    counts = on_cores(server, every_core, workload, build, seconds)
                    results[name]["rounds"].setdefault("every_core", []).append(counts)
        for name in running:
            for workload_name, measured in results[name]["rounds"].items():
                results[name]["workloads"][workload_name] = best(measured)
    finally:
        for server in running.values():
            server.stop()
            server.log.unlink()
    return results


def on_cores(
    server: servers.RunningServer,
    cores: Collection[int],
    workload: workloads.Workload,
    build: Path,
    seconds: float,
) -> dict[str, float]:
    """Run C{workload} with C{server}'s processes and the load generator free on C{cores}."""
    pinned_to = os.sched_getaffinity(server.process.pid)
    servers.set_tree_affinity(server.process.pid, cores)
    try:
        return workloads.run(workload, server, build, seconds, cores)
    finally:
        servers.set_tree_affinity(server.process.pid, pinned_to)


def best(measured: list[dict[str, float]]) -> dict[str, float]:
    """
    The fastest round, with the correctness counts of all rounds and the
    server's user and system CPU seconds per operation over all rounds
    (the kernel splits CPU time between the two by sampling at its clock
    ticks, and C{/proc} counts it in hundredths of a second: one 0.6 s
    round's split is rough).
    """
    chosen = dict(max(measured, key=lambda counts: counts["bytes"] / counts["seconds"]))
    for key in ("bad", "errors", "lost"):
        chosen[key] = sum(counts[key] for counts in measured)
    chosen["checked"] = operations = sum(counts["ops"] for counts in measured)
    for part in ("server_user", "server_system"):
        if operations and all(part in counts for counts in measured):
            used = sum(counts[part] * counts["seconds"] for counts in measured)
            chosen[f"{part}_per_op"] = used / operations
    return chosen

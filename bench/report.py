"""
The results as Markdown tables: one of measurements, one of ratios to the
C epoll server, one of the targets twisted-caps aims at, and the
correctness counts the smoke test relies on.
"""

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Results = dict[str, Any]
BASELINE = "c"


@dataclass(frozen=True)
class Row:
    """A line of the table: a label and how to read it from a workload's counts."""

    label: str
    workload: str
    value: Callable[[dict[str, float]], float | str]
    ratio: bool = True


def _latency(counts: dict[str, float]) -> str:
    return f"{counts['p50_us']:.0f} / {counts['p99_us']:.0f}"


def _busy(counts: dict[str, float]) -> str:
    return f"{counts['server_busy']:.0%} / {counts['load_busy']:.0%}"


def _cpu_per_op(counts: dict[str, float]) -> str:
    """
    The server's user and system CPU time per operation over all rounds,
    in microseconds: what its own code costs against what the kernel does
    for it.
    """
    if "server_user_per_op" not in counts:
        return "-"
    return f"{counts['server_user_per_op'] * 1e6:.1f} / {counts['server_system_per_op'] * 1e6:.1f}"


def _per_cpu(key: str) -> Callable[[dict[str, float]], float]:
    """The figure per second of server CPU: what a core to itself would give."""
    return lambda counts: counts[key] / counts["server_busy"] if counts["server_busy"] else 0.0


ROWS = (
    Row("req/resp 1 conn, msg/s", "rr1", lambda c: c["rate"]),
    Row("  p50 / p99 latency, µs", "rr1", _latency, ratio=False),
    Row("req/resp 100 conns, msg/s", "rr100", lambda c: c["rate"]),
    Row("  p50 / p99 latency, µs", "rr100", _latency, ratio=False),
    Row("  CPU busy: server / load gen", "rr100", _busy, ratio=False),
    Row("  per server CPU-second", "rr100", _per_cpu("rate")),
    Row("  server CPU µs per message, user / system", "rr100", _cpu_per_op, ratio=False),
    Row("bulk 10 conns, MB/s", "bulk", lambda c: c["mb_per_s"]),
    Row("  CPU busy: server / load gen", "bulk", _busy, ratio=False),
    Row("  per server CPU-second", "bulk", _per_cpu("mb_per_s")),
    Row("saturating stream 10 conns, MB/s", "stream", lambda c: c["mb_per_s"]),
    Row("  CPU busy: server / load gen", "stream", _busy, ratio=False),
    Row("  per server CPU-second", "stream", _per_cpu("mb_per_s")),
    Row("churn, conn/s", "churn", lambda c: c["rate"]),
    Row("  CPU busy: server / load gen", "churn", _busy, ratio=False),
    Row("  per server CPU-second", "churn", _per_cpu("rate")),
    Row("  server CPU µs per connection, user / system", "churn", _cpu_per_op, ratio=False),
    Row("UDP, datagrams/s", "udp", lambda c: c["rate"]),
    Row("  CPU busy: server / load gen", "udp", _busy, ratio=False),
    Row("  per server CPU-second", "udp", _per_cpu("rate")),
    Row("  server CPU µs per datagram, user / system", "udp", _cpu_per_op, ratio=False),
    Row("RSS per idle conn, KiB", "idle", lambda c: c["kib_per_conn"], ratio=False),
    Row("req/resp 100 conns, every core, msg/s", "every_core", lambda c: c["rate"], ratio=False),
    Row("  CPU busy: server / load gen", "every_core", _busy, ratio=False),
)
ROW = {(row.workload, row.label): row for row in ROWS}


@dataclass(frozen=True)
class Target:
    """A figure twisted-caps aims at: C{server}'s figure on C{row}, or its ratio to C{versus}."""

    server: str
    versus: str | None
    row: Row
    goal: float
    at_most: bool = False


def _per_cpu_row(workload: str) -> Row:
    """The per-server-CPU-second row of C{workload}."""
    return ROW[workload, "  per server CPU-second"]


#: The workloads C{--workers 2} is compared with one worker on, per CPU-second.
WORKER_WORKLOADS = ("rr100", "bulk", "stream", "churn", "udp")

TARGETS = (
    Target("caps", "twisted", _per_cpu_row("rr100"), 1.0),
    Target("caps", "asyncio", _per_cpu_row("rr100"), 1.0),
    Target("caps", "twisted", _per_cpu_row("bulk"), 1.0),
    Target("caps", "uvloop", _per_cpu_row("bulk"), 0.9),
    Target("caps", "c", _per_cpu_row("bulk"), 0.8),
    Target("caps", "twisted", _per_cpu_row("stream"), 1.0),
    Target("caps", "twisted", _per_cpu_row("churn"), 1.0),
    Target("caps", "asyncio", _per_cpu_row("churn"), 1.0),
    Target("caps", "uvloop", _per_cpu_row("churn"), 1.0),
    Target("caps", "uvloop", _per_cpu_row("rr100"), 1.0),
    Target("caps", "twisted", _per_cpu_row("udp"), 1.2),
    *(Target("caps-workers", "caps", _per_cpu_row(name), 0.9) for name in WORKER_WORKLOADS),
    Target("caps-workers", "caps",
           ROW["every_core", "req/resp 100 conns, every core, msg/s"], 1.6),
    Target("caps", None, ROW["idle", "RSS per idle conn, KiB"], 1.3, at_most=True),
)  # fmt: skip


def _format(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def tables(results: Results) -> str:
    """The measurement table and the ratio table, as Markdown."""
    servers = results["servers"]
    names = list(servers)
    header = "| workload | " + " | ".join(servers[n]["title"] for n in names) + " |"
    rule = "|---" * (len(names) + 1) + "|"
    lines = [header, rule]
    for row in ROWS:
        cells = [_cell(servers[name], row) for name in names]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    if BASELINE in servers:
        baseline = servers[BASELINE]
        lines += ["", f"Ratio to {baseline['title']} (higher is better):", "", header, rule]
        for row in ROWS:
            if row.ratio:
                cells = [_ratio(servers[name], baseline, row) for name in names]
                lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    idle = [s for s in servers.values() if "workloads" in s and "idle" in s["workloads"]]
    short = [f"{s['title']} held {s['workloads']['idle']['ops']:.0f}" for s in idle
             if s["workloads"]["idle"]["short_of"]]  # fmt: skip
    if short:
        lines += ["", "Idle connections fewer than asked: " + "; ".join(short) + "."]
    skipped = [f"{s['title']}: {s['skipped']}" for s in servers.values() if "skipped" in s]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    return "\n".join(lines)


def targets(results: Results) -> str:
    """
    Each target with the figure or ratio this run measured (from each
    server's best round), and whether it was met; and for a ratio, the
    ratios round by round: the two servers ran one after the other in each
    round, so how far those spread says how far the machine moved.
    """
    servers = results["servers"]
    lines = [
        "| target | measured | goal | | round by round: median (lowest-highest) |",
        "|---|---|---|---|---|",
    ]
    for target in TARGETS:
        mine = _number(servers.get(target.server), target.row)
        label = f"{_title(servers, target.server)}, {full_label(target.row)}"
        if target.versus is None:
            measured = mine
        else:
            theirs = _number(servers.get(target.versus), target.row)
            label += f", ratio to {_title(servers, target.versus)}"
            measured = mine / theirs if mine is not None and theirs else None
        goal = f"{'<=' if target.at_most else '>='} {target.goal}"
        if measured is None:
            lines.append(f"| {label} | not measured | {goal} | | |")
            continue
        met = measured <= target.goal if target.at_most else measured >= target.goal
        verdict = "met" if met else "missed"
        spread = ""
        if target.versus is not None:
            spread = _round_ratios(servers[target.server], servers[target.versus], target.row)
        lines.append(f"| {label} | {measured:.2f} | {goal} | {verdict} | {spread} |")
    return "\n".join(lines)


def _round_ratios(server: Results, versus: Results, row: Row) -> str:
    """C{server}'s figure over C{versus}' in each round both ran: median (lowest-highest)."""
    mine_rounds = server.get("rounds", {}).get(row.workload, [])
    their_rounds = versus.get("rounds", {}).get(row.workload, [])
    ratios = []
    for mine, theirs in zip(mine_rounds, their_rounds, strict=False):
        mine_value, their_value = row.value(mine), row.value(theirs)
        assert not isinstance(mine_value, str) and not isinstance(their_value, str)
        if their_value:
            ratios.append(mine_value / their_value)
    if not ratios:
        return ""
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def full_label(row: Row) -> str:
    """C{row}'s label, prefixed for an indented row with its workload's first row."""
    if not row.label.startswith(" "):
        return row.label
    heading = next(r for r in ROWS if r.workload == row.workload and not r.label.startswith(" "))
    return f"{heading.label}, {row.label.strip()}"


def _title(servers: Results, name: str) -> str:
    return str(servers[name]["title"]) if name in servers else name


def _number(server: Results | None, row: Row) -> float | None:
    """The server's figure on C{row}, or None if it was not measured."""
    if server is None or row.workload not in server.get("workloads", {}):
        return None
    value = row.value(server["workloads"][row.workload])
    assert not isinstance(value, str)
    return value


def _cell(server: Results, row: Row) -> str:
    if "skipped" in server:
        return "skipped"
    if row.workload not in server["workloads"]:
        return "-"
    return _format(row.value(server["workloads"][row.workload]))


def _ratio(server: Results, baseline: Results, row: Row) -> str:
    mine, theirs = _number(server, row), _number(baseline, row)
    return f"{mine / theirs:.2f}" if mine is not None and theirs else "-"


def correctness(results: Results) -> str:
    """One line per server: replies checked, wrong, failed connections, UDP lost."""
    lines = []
    for server in results["servers"].values():
        if "skipped" in server:
            continue
        counts = server["workloads"].values()
        checked = sum(int(c.get("checked", c["ops"])) for c in counts)
        bad = sum(int(c["bad"]) for c in counts)
        errors = sum(int(c["errors"]) for c in counts)
        lost = sum(int(c["lost"]) for c in counts)
        lines.append(
            f"{server['title']}: {checked:,} replies checked, {bad} wrong, "
            f"{errors} connection errors, {lost} UDP datagrams lost"
        )
    return "\n".join(lines)

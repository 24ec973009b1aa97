"""
Smoke tests of the benchmark: it runs, and every reply it saw was right.

No speed is asserted: the numbers depend on the machine and its load.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from bench import counts as call_counts
from bench import instructions, interleave, report, servers, workloads
from tests.servers import require_program

ROOT = Path(__file__).resolve().parent.parent


def run_python_module(*argv: str) -> tuple[int, bytes]:
    """
    Run C{python -m ARGV} from the checkout in its own process group; its
    exit status and output. The group is killed on any failure, timeout
    (120 s) included, so no server it started outlives the test.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, output


class QuickRunTests(TestCase):
    """C{python -m bench --quick} end to end."""

    def run_bench(self, *argv: str) -> tuple[int, bytes]:
        """Run the benchmark; its exit status and output."""
        return run_python_module("bench", *argv)

    def test_quick_run_checks_every_reply(self) -> None:
        require_program("cc")
        results_file = Path(self.mktemp()).resolve()
        status, output = self.run_bench("--quick", "--json", str(results_file))
        self.assertEqual(status, 0, output.decode(errors="replace"))
        results: dict[str, Any] = json.loads(results_file.read_text())
        measured = {n: s for n, s in results["servers"].items() if "skipped" not in s}
        self.assertIn("caps", measured)
        self.assertIn("c", measured)
        for name, server in measured.items():
            for workload, counts in server["workloads"].items():
                where = f"{name} {workload}"
                self.assertGreater(counts["ops"], 0, where)
                self.assertEqual(counts["bad"], 0, where)
                self.assertEqual(counts["errors"], 0, where)

    def test_rounds_below_one_is_a_usage_error(self) -> None:
        status, output = self.run_bench("--rounds", "0")
        self.assertEqual(status, 2)
        self.assertEqual(
            output.splitlines()[-1], b"python -m bench: error: --rounds must be at least 1"
        )


class CountsAndWorkersTests(TestCase):
    """C{python -m bench.counts} and C{python -m bench.workers}, run small."""

    def run_module(self, *argv: str) -> str:
        """Run C{python -m ARGV}; its output, after exit status 0."""
        status, output = run_python_module(*argv)
        text = output.decode(errors="replace")
        self.assertEqual(status, 0, text)
        return text

    def test_the_c_server_makes_two_recvs_and_one_send_per_connection(self) -> None:
        require_program("cc")
        require_program("strace")
        output = self.run_module(
            "bench.counts", "--servers", "c", "--workloads", "churn", "--seconds", "0.5",
            "--no-profile",
        )  # fmt: skip
        [row] = [line for line in output.splitlines() if line.startswith("| C epoll")]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        columns = ["server", *call_counts.SHOWN, "other", "Python calls", "user instructions"]
        measured = dict(zip(columns, cells, strict=True))
        # Within what connections still open at the end add (see the module).
        self.assertLess(abs(float(measured["recvfrom"]) - 2.0), 0.3, row)
        self.assertLess(abs(float(measured["sendto"]) - 1.0), 0.2, row)
        self.assertLess(abs(float(measured["close"]) - 1.0), 0.2, row)

    def test_instructions_are_counted_per_connection(self) -> None:
        """The C server's user-space instructions per connection: a few thousand at most."""
        require_program("cc")
        require_program("valgrind")
        output = self.run_module(
            "bench.counts", "--servers", "c", "--workloads", "churn", "--seconds", "0.5",
            "--no-profile", "--instructions",
        )  # fmt: skip
        [row] = [line for line in output.splitlines() if line.startswith("| C epoll")]
        counted = float(row.strip("|").split("|")[-1].replace(",", ""))
        self.assertGreater(counted, 100, row)
        self.assertLess(counted, 20_000, row)

    def test_workers_mode_runs_every_count_asked(self) -> None:
        require_program("cc")
        output = self.run_module(
            "bench.workers", "--workers", "1,2", "--seconds", "0.3", "--rounds", "1"
        )
        rows = [line for line in output.splitlines() if line.startswith("| --workers")]
        names = [row.split("|")[1].strip() for row in rows]
        self.assertEqual(names, ["--workers 1", "--workers 2"])
        for row in rows:
            churn = float(row.split("|")[2].replace(",", ""))
            self.assertGreater(churn, 0, row)

    def test_strace_summary_is_read_by_system_call(self) -> None:
        summary = (
            "% time     seconds  usecs/call     calls    errors syscall\n"
            "------ ----------- ----------- --------- --------- ----------------\n"
            " 60.00    0.000600           3       200           recvfrom\n"
            " 40.00    0.000400           2       120        20 accept4\n"
            "100.00    0.001000           3       320        20 total\n"
        )
        self.assertEqual(call_counts.strace_counts(summary), {"recvfrom": 200, "accept4": 120})

    def test_callgrind_dump_is_read_for_its_total(self) -> None:
        dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 437427938\n"
        self.assertEqual(instructions.dump_total(dump), 437427938)
        with self.assertRaises(ValueError):
            instructions.dump_total("events: Ir\n")


class LoadGeneratorTests(TestCase):
    """The load generator's checking, against the C server."""

    def drive_c_server(self, seconds: float, expected: bytes) -> dict[str, float]:
        """Send the C epoll server "hello world" requests; check replies against C{expected}."""
        require_program("cc")
        build = Path(self.mktemp())
        build.mkdir(parents=True)
        servers.compile_programs(build)
        spec = next(s for s in servers.SERVERS if s.name == "c")
        server = servers.start(spec, [str(build / "epoll_server")], None)
        self.addCleanup(server.log.unlink)
        self.addCleanup(server.stop)
        rr = workloads.Workload("rr", "req/resp", "tcp", 2, 1, b"hello world\n")
        return workloads.run_loadgen(rr, server, build, seconds, None, expected=expected)

    def test_reply_differing_from_expected_is_counted_wrong(self) -> None:
        counts = self.drive_c_server(0.2, expected=b"hello world\n")
        self.assertEqual(counts["ops"], 0)
        self.assertGreater(counts["bad"], 0)

    def test_the_server_cpu_is_read_as_user_and_system_time(self) -> None:
        """A server answering requests spends kernel time; the two parts make its busy figure."""
        counts = self.drive_c_server(0.5, expected=b"HELLO WORLD\n")
        self.assertGreater(counts["ops"], 0)
        # The C server's time is nearly all the kernel's.
        self.assertGreater(counts["server_system"], counts["server_user"])
        parts = counts["server_user"] + counts["server_system"]
        self.assertAlmostEqual(counts["server_busy"], parts)


def made_up_round(operations: int, seconds: float, **cpu: float) -> dict[str, float]:
    """One round's counts, answered right: C{operations} in C{seconds}, with C{cpu}'s figures."""
    return {"ops": operations, "bytes": operations, "seconds": seconds,
            "bad": 0, "errors": 0, "lost": 0, **cpu}  # fmt: skip


def measured(title: str, **workload_rates: float) -> dict[str, Any]:
    """A server's results with the given rate (msg/s, MB/s or KiB) per workload."""
    counts = {
        name: {"rate": rate, "mb_per_s": rate, "kib_per_conn": rate, "p50_us": 1, "p99_us": 2,
               "server_busy": 1.0, "load_busy": 0.5}
        for name, rate in workload_rates.items()
    }  # fmt: skip
    return {"title": title, "workloads": counts}


class ReportTests(SynchronousTestCase):
    """The tables and the targets, from results made up for the purpose."""

    def target_line(self, results: dict[str, Any], start: str) -> str:
        [line] = [line for line in report.targets(results).splitlines() if line.startswith(start)]
        return line

    def test_a_ratio_is_met_or_missed_against_its_goal(self) -> None:
        results = {"servers": {
            "caps": measured("twisted-caps", rr100=90.0, udp=120.0),
            "asyncio": measured("asyncio", rr100=100.0),
            "twisted": measured("bare Twisted", rr100=60.0, udp=100.0),
        }}  # fmt: skip
        self.assertIn("| 0.90 | >= 1.0 | missed |",
                      self.target_line(results, "| twisted-caps, req/resp 100 conns, msg/s, "
                                       "per server CPU-second, ratio to asyncio"))  # fmt: skip
        self.assertIn("| 1.20 | >= 1.2 | met |",
                      self.target_line(results, "| twisted-caps, UDP"))  # fmt: skip

    def test_caps_is_held_to_uvloop_on_churn_and_request_response(self) -> None:
        results = {"servers": {
            "caps": measured("twisted-caps", rr100=90.0, churn=30.0),
            "uvloop": measured("uvloop", rr100=100.0, churn=30.0),
        }}  # fmt: skip
        self.assertIn("| 0.90 | >= 1.0 | missed |",
                      self.target_line(results, "| twisted-caps, req/resp 100 conns, msg/s, "
                                       "per server CPU-second, ratio to uvloop"))  # fmt: skip
        self.assertIn("| 1.00 | >= 1.0 | met |",
                      self.target_line(results, "| twisted-caps, churn, conn/s, "
                                       "per server CPU-second, ratio to uvloop"))  # fmt: skip

    def test_a_ratio_shows_how_it_moved_from_round_to_round(self) -> None:
        """Each round's ratio, the two servers paired in it: median, lowest, highest."""
        caps = measured("twisted-caps", churn=30.0)
        uvloop = measured("uvloop", churn=30.0)
        caps["rounds"] = {"churn": [{"rate": r, "server_busy": 1.0} for r in (27.0, 33.0, 30.0)]}
        # The third round: 25 conn/s on half the CPU, 50 per CPU-second.
        paced = ((30.0, 1.0), (30.0, 1.0), (25.0, 0.5))
        uvloop["rounds"] = {"churn": [{"rate": r, "server_busy": b} for r, b in paced]}
        results = {"servers": {"caps": caps, "uvloop": uvloop}}
        line = self.target_line(results, "| twisted-caps, churn, conn/s, per server CPU-second, "
                                "ratio to uvloop")  # fmt: skip
        self.assertTrue(line.endswith("| met | 0.90 (0.60-1.10) |"), line)

    def test_a_figure_that_is_not_a_ratio_has_no_rounds_column(self) -> None:
        results = {"servers": {"caps": measured("twisted-caps", idle=1.2)}}
        line = self.target_line(results, "| twisted-caps, RSS per idle conn")
        self.assertTrue(line.endswith("| met |  |"), line)

    def test_memory_is_a_ceiling(self) -> None:
        over = {"servers": {"caps": measured("twisted-caps", idle=1.4)}}
        under = {"servers": {"caps": measured("twisted-caps", idle=1.2)}}
        start = "| twisted-caps, RSS per idle conn"
        self.assertIn("| 1.40 | <= 1.3 | missed |", self.target_line(over, start))
        self.assertIn("| 1.20 | <= 1.3 | met |", self.target_line(under, start))

    def test_a_server_not_run_leaves_its_targets_unmeasured(self) -> None:
        results = {"servers": {"caps": measured("twisted-caps", rr100=90.0)}}
        line = self.target_line(
            results,
            "| twisted-caps, req/resp 100 conns, msg/s, per server CPU-second, ratio to asyncio",
        )
        self.assertIn("not measured", line)

    def test_workers_are_compared_with_one_worker_on_every_workload(self) -> None:
        rates = {"rr100": 100.0, "bulk": 100.0, "stream": 100.0, "churn": 100.0, "udp": 100.0}
        results = {"servers": {
            "caps": measured("twisted-caps", **rates),
            "caps-workers": measured("caps --workers 2", **{**rates, "churn": 50.0}),
        }}  # fmt: skip
        lines = [line for line in report.targets(results).splitlines()
                 if line.startswith("| caps --workers 2,") and ">= 0.9" in line]  # fmt: skip
        self.assertEqual(len(lines), len(report.WORKER_WORKLOADS))
        self.assertEqual([line for line in lines if "missed" in line],
                         [self.target_line(results, "| caps --workers 2, churn")])  # fmt: skip

    def test_the_server_cpu_per_operation_is_split_into_user_and_system(self) -> None:
        caps = measured("twisted-caps", churn=25000.0)
        caps["workloads"]["churn"].update(server_user_per_op=10e-6, server_system_per_op=30e-6)
        older = measured("results without the split", churn=1.0)
        results = {"servers": {"caps": caps, "old": older}}
        self.assertIn("|   server CPU µs per connection, user / system | 10.0 / 30.0 | - |",
                      report.tables(results))  # fmt: skip

    def test_the_cpu_split_is_summed_over_every_round(self) -> None:
        """
        A round of 0.5 s (100 operations, 0.05 s of user time, 0.15 of
        system) and one of 2 s (300, 1.0 and 0.8): the CPU used per second
        of each round, times its seconds, over every operation.
        """
        chosen = interleave.best(
            [
                made_up_round(100, 0.5, server_user=0.1, server_system=0.3),
                made_up_round(300, 2.0, server_user=0.5, server_system=0.4),
            ]
        )
        self.assertEqual(chosen["ops"], 100)  # the faster round: 200 a second
        self.assertAlmostEqual(chosen["server_user_per_op"], 1.05 / 400)
        self.assertAlmostEqual(chosen["server_system_per_op"], 0.95 / 400)

    def test_rounds_without_the_split_or_operations_have_none(self) -> None:
        older = interleave.best([made_up_round(100, 1.0), made_up_round(300, 1.0)])
        self.assertNotIn("server_user_per_op", older)
        idle = interleave.best([made_up_round(0, 1.0, server_user=0.0, server_system=0.1)])
        self.assertNotIn("server_system_per_op", idle)

    def test_a_stat_line_is_read_past_its_command_name(self) -> None:
        stat = "42 (a) b) S 1 42 42 0 -1 4194560 10 0 0 0 7 3 0 0 20 0 1 0 5 0 0"
        self.assertEqual(servers.stat_cpu_ticks(stat), (7, 3))

    def test_tables_without_the_c_server_have_no_ratio_table(self) -> None:
        results = {"servers": {"caps": measured("twisted-caps", rr1=9.0, rr100=90.0)}}
        tables = report.tables(results)
        self.assertNotIn("Ratio to", tables)
        self.assertIn("| req/resp 100 conns, msg/s | 90.00 |", tables)

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

from twisted.trial.unittest import TestCase

from bench import servers, workloads
from tests.servers import require_program

ROOT = Path(__file__).resolve().parent.parent


class QuickRunTests(TestCase):
    """C{python -m bench --quick} end to end."""

    def run_bench(self, *argv: str) -> tuple[int, bytes]:
        """Run the benchmark in its own process group; kill the group on any failure."""
        process = subprocess.Popen(
            [sys.executable, "-m", "bench", *argv],
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


class LoadGeneratorTests(TestCase):
    """The load generator's checking, against the C server."""

    def test_reply_differing_from_expected_is_counted_wrong(self) -> None:
        require_program("cc")
        build = Path(self.mktemp())
        build.mkdir(parents=True)
        servers.compile_programs(build)
        spec = next(s for s in servers.SERVERS if s.name == "c")
        server = servers.start(spec, [str(build / "epoll_server")], None)
        self.addCleanup(server.log.unlink)
        self.addCleanup(server.stop)
        rr = workloads.Workload("rr", "req/resp", "tcp", 2, 1, b"hello world\n")
        counts = workloads.run_loadgen(rr, server, build, 0.2, None, expected=b"hello world\n")
        self.assertEqual(counts["ops"], 0)
        self.assertGreater(counts["bad"], 0)

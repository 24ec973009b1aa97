"""
User-space instructions per connection or message, counted by valgrind's
callgrind in the server's main process while it serves (from after its
start to the end of the load).

Instructions are the most repeatable count of what a server does in
user space: they do not depend on the machine's load, and two versions
of one server differ by what they run, not by the noise of a timed run.
They leave out the kernel (the system calls, which C{bench.counts} counts
apart) and say nothing of the time an instruction takes (a cache miss, a
system call's cost). Under callgrind a server runs about fifty times
slower, so each one has fewer operations to average over than a timed
run.
"""

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import servers

#: The count of a callgrind dump: C{summary: N} (or C{totals: N}).
TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def dump_total(dump: str) -> int:
    """The instructions a callgrind dump counted."""
    found = TOTAL.search(dump)
    if found is None:
        raise ValueError("not a callgrind dump")
    return int(found.group(1))


def per_operation(
    spec: servers.ServerSpec, build: Path, drive: Callable[[servers.RunningServer], float]
) -> float | None:
    """
    Start C{spec} under callgrind on core 0, zero its counts once it
    serves, C{drive} it (which returns the operations done) and divide the
    instructions counted by them; None without valgrind or a server to run.
    """
    command = spec.command(build)
    control = shutil.which("callgrind_control")
    if isinstance(command, str) or shutil.which("valgrind") is None or control is None:
        return None
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as directory:
        output = Path(directory) / "callgrind.out"
        counted = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}.%p", *command]
        server = servers.start(spec, counted, (0,))
        pid = server.process.pid
        try:
            subprocess.run([control, "--zero", str(pid)], check=True, capture_output=True)
            operations = drive(server)
            subprocess.run([control, "--dump", str(pid)], check=True, capture_output=True)
        finally:
            server.stop()
            server.log.unlink()
        dumped = Path(f"{output}.{pid}.1").read_text()
    return dump_total(dumped) / operations

"""
caps-check against a corpus of the servers students write (one file each
in C{tests/student_servers/}, each pattern named there with where it is
common): every check of both profiles is compared with a verdict decided
by hand, by reading the server and the check's definition, and written
below. Each server is graded as an autograder grades it (started per
profile with L{twisted_caps.check.grade_server}, its port on its command
line), in bounded time and memory, and nothing it started survives.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.servers import wait_for
from twisted_caps.check import PROFILES, select_checks
from twisted_caps.check.target import Transport

PROJECT = Path(__file__).resolve().parent.parent
STUDENT_SERVERS = PROJECT / "tests" / "student_servers"
#: The checks, in the columns of the rows below.
TCP_COLUMNS = (
    "tcp-reply",
    "tcp-sentences",
    "tcp-concurrent",
    "unicode",
    "split-multibyte",
    "invalid-utf8",
    "no-framing",
    "stream",
    "half-close",
    "tcp-survives-reset",
)
#: The last two, the UDP counterparts of unicode and invalid-utf8, are
#: compared where caps-check has them.
UDP_COLUMNS = (
    "udp-reply",
    "udp-independent",
    "udp-empty",
    "udp-large",
    "udp-unicode",
    "udp-invalid-utf8",
)
#: Seconds each wait of a check may last, and a server may take to listen.
TIMEOUT = 2.0
#: Room to start on a loaded machine: Python 2.7 under four graders at once
#: once took more than 5 s.
STARTUP_TIMEOUT = 15.0
#: Bounds on grading one server with both profiles: wall clock, and the
#: peak resident memory of the checker (or of the server, if larger).
MOST_SECONDS = 75
MOST_KIB = 200 * 1024
#: Servers graded at the same time: most of a run is waiting.
PARALLEL = 4


@dataclass(frozen=True)
class Student:
    """
    A corpus server: its file's name, its pattern (as the documentation's
    table names it), the transports it serves, its hand verdicts.
    """

    name: str
    pattern: str
    transports: tuple[Transport, ...]
    #: One letter per column (P passes, F fails), in TCP_COLUMNS or UDP_COLUMNS order.
    verdicts: str

    @property
    def path(self) -> Path:
        return STUDENT_SERVERS / f"{self.name}.py"

    def hand_verdicts(self) -> dict[str, bool]:
        columns = TCP_COLUMNS if self.transports == ("tcp",) else UDP_COLUMNS
        letters = self.verdicts.split()
        assert len(letters) == len(columns), self.name
        return {check: letter == "P" for check, letter in zip(columns, letters, strict=True)}

    def documented_row(self) -> str:
        """The row of docs/grading.md's corpus table: the pattern, then each profile's verdict."""
        cells = [f"`{self.name}.py`: {self.pattern}"]
        hand = self.hand_verdicts()
        for profile in PROFILES:
            ran = [check.id for check in select_checks(profile, self.transports)]
            failed = [check_id for check_id in ran if not hand[check_id]]
            if not failed:
                cells.append(f"passes all {len(ran)}")
            elif len(failed) == len(ran):
                cells.append(f"fails all {len(ran)}")
            else:
                cells.append("fails " + ", ".join(f"`{check_id}`" for check_id in failed))
        return "| " + " | ".join(cells) + " |"


# The hand verdicts. A verdict is what is true of the server (started
# fresh), whatever checks ran before: the same in both profiles.
#
#                   reply sentences concurrent unicode split invalid no-framing stream half reset
PYTHON3_TCP = (
    # Iterative; one recv(1024) per connection, strict decode: the first half
    # of a split 'ß' and invalid UTF-8 raise UnicodeDecodeError and end it;
    # one read cannot answer 1 MiB or the rest after a half-close; no try.
    Student(
        "textbook_tcp",
        "the textbook's TCP server, Python 3, `decode()`",
        ("tcp",),
        "P P F P F F P F F F",
    ),
    # The same with the port typed in (12000; 0 in the suite): nothing on
    # the port it is given.
    Student(
        "textbook_fixed_port",
        "the same, its port typed in (12000)",
        ("tcp",),
        "F F F F F F F F F F",
    ),
    # select() with bytes.upper() and a try around recv and send: right but
    # for Unicode (ASCII letters only, so 'ß' stays 'ß').
    Student(
        "select_server", "`select()`, one process, `bytes.upper()`", ("tcp",), "P P P F F P P P P P"
    ),
    # select() with a strict decode per recv() and no try: Unicode in one
    # piece is right; a split character, invalid UTF-8 or a reset (recv()
    # raises ConnectionResetError) ends the whole process.
    Student(
        "select_decode_no_try",
        "`select()`, one process, `decode()`, no `try`",
        ("tcp",),
        "P P P P F F P P P F",
    ),
    # A thread per client, strict decode per chunk: a bad chunk ends its
    # thread only.
    Student(
        "strict_decode",
        "a thread per client, `decode()` per chunk",
        ("tcp",),
        "P P P P F F P P P P",
    ),
    # socketserver with readline(): nothing is answered without a newline
    # (the checks that judge framing fail), and after the first line the
    # handler returns and the connection closes (stream, half-close). A
    # thread per client survives resets and serves clients at once; the line
    # is upper-cased as bytes: invalid UTF-8 comes back right, Unicode not.
    Student(
        "socketserver_readline",
        "`socketserver` threads, `readline()`",
        ("tcp",),
        "F F P F F P F F F P",
    ),
    # fork() per client, the parent closes its copy: right but for Unicode.
    Student("forking_server", "`fork()` per client", ("tcp",), "P P P F F P P P P P"),
    # fork() per client, the parent keeps its copy: no end of file after a
    # half-close (the child's close does not end the connection).
    Student(
        "fork_keeps_socket",
        "`fork()` per client, the parent keeps its copy",
        ("tcp",),
        "P P P F F P P P F P",
    ),
    # multiprocessing per client, the child never tests for b'': it spins
    # after the end of file and never closes.
    Student(
        "multiprocessing_spins",
        "`multiprocessing` per client, spins after EOF",
        ("tcp",),
        "P P P F F P P P F P",
    ),
)
#                   udp-reply independent empty large udp-unicode udp-invalid-utf8
PYTHON3_UDP = (
    # recvfrom(2048) and a strict decode: 60,000 bytes come back cut; Unicode
    # is right; a datagram that is not UTF-8 ends the process.
    Student(
        "textbook_udp",
        "the textbook's UDP server, Python 3, `decode()`",
        ("udp",),
        "P P P F P F",
    ),
    # socketserver reads max_packet_size (8192) bytes of a datagram;
    # bytes.upper() leaves 'ß' as it is and bytes that are not UTF-8 too.
    Student(
        "socketserver_udp",
        "`socketserver` UDP threads, `bytes.upper()`",
        ("udp",),
        "P P P F F P",
    ),
)
#                   reply sentences concurrent unicode split invalid no-framing stream half reset
PYTHON2 = (
    # Python 2's str.upper() on the bytes read once (ASCII letters only);
    # iterative; a reset ends it.
    Student(
        "textbook_tcp_py2", "the textbook's TCP server, Python 2.7", ("tcp",), "P P F F F P P F F F"
    ),
    Student("textbook_udp_py2", "the textbook's UDP server, Python 2.7", ("udp",), "P P P F F P"),
)

#: Grades one server with both profiles, in a child of its own, and prints
#: the verdicts, the time each profile took and the peak resident memory
#: of the processes it waited for (the checker and the server).
GRADE = """
import json, resource, sys, time
from twisted_caps.check import grade_server
command, transports, timeout, startup = json.loads(sys.argv[1])
graded = {}
for profile in ("lecture", "full"):
    started = time.monotonic()
    report = grade_server(command, profile, tuple(transports), timeout, startup)
    graded[profile] = {
        "checks": {result.id: result.passed for result in report.results},
        "details": {result.id: result.detail for result in report.results},
        "seconds": time.monotonic() - started,
    }
graded["max_rss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps(graded))
"""


def python_2() -> str:
    """
    pyenv's Python 2.7.18, or skip: Python 2 is in no Debian release CI
    installs from, so its absence is a skip even where tools are required.
    """
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    pyenv = shutil.which("pyenv") or shutil.which("pyenv", path=str(root / "bin"))
    found = None
    if pyenv is not None:
        found = subprocess.run(
            [pyenv, "prefix", "2.7.18"], capture_output=True, text=True, timeout=30
        )
    interpreter = Path(found.stdout.strip() if found else "") / "bin" / "python2.7"
    if not found or found.returncode or not os.access(interpreter, os.X_OK):
        raise SkipTest("pyenv's Python 2.7.18 is not installed (pyenv install 2.7.18)")
    return str(interpreter)


def still_running(marker: str) -> list[int]:
    """The processes with C{marker} in their command line (forked children keep it)."""
    running = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                words = cmdline.read().split(b"\0")
        except OSError:  # it ended while we looked
            continue
        if marker.encode() in words:
            running.append(int(entry))
    return running


def nothing_left_of(marker: str) -> Callable[[], bool]:
    """A predicate: no process with C{marker} in its command line is running."""
    return lambda: not still_running(marker)


def server_environment() -> dict[str, str]:
    """
    This process's environment less C{PYTHONPATH}, as a student's shell has
    it: trial's workers put this Python's paths there, and Python 2.7 dies
    at start-up on Python 3's standard library.
    """
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def grade(student: Student, interpreter: str) -> dict[str, Any]:
    """
    Grade C{student} with both profiles in a child Python; return what it
    printed, and the marker its command line carried (after the port, which
    the servers ignore), which tells its processes from those of other tests.
    """
    marker = f"corpus-{uuid.uuid4().hex}"
    command = [interpreter, str(student.path), "{port}", marker]
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            GRADE,
            json.dumps([command, student.transports, TIMEOUT, STARTUP_TIMEOUT]),
        ],
        capture_output=True,
        text=True,
        timeout=MOST_SECONDS * 2,
        env=server_environment(),
    )
    if done.returncode:
        raise AssertionError(f"grading {student.name} failed: {done.stderr}")
    graded: dict[str, Any] = json.loads(done.stdout)
    graded["seconds"] = time.monotonic() - started
    graded["marker"] = marker
    return graded


def disagreements(student: Student, graded: Mapping[str, Any]) -> list[str]:
    """Every check whose verdict is not the hand verdict (or not the known wrong one)."""
    hand = student.hand_verdicts()
    found = []
    for profile in PROFILES:
        checks: dict[str, bool] = graded[profile]["checks"]
        expected_ids = [check.id for check in select_checks(profile, student.transports)]
        if list(checks) != expected_ids:
            found.append(f"{student.name} {profile}: ran {list(checks)}, not {expected_ids}")
        for check_id, passed in checks.items():
            if check_id not in hand:
                found.append(f"{student.name}: {check_id} has no hand verdict")
                continue
            if passed != hand[check_id]:
                detail = graded[profile]["details"][check_id]
                found.append(
                    f"{student.name} {profile} {check_id}: "
                    f"{'PASS' if passed else 'FAIL'} {detail}, by hand "
                    f"{'PASS' if hand[check_id] else 'FAIL'}"
                )
    return found


def assert_corpus(
    case: SynchronousTestCase, students: tuple[Student, ...], interpreter: str | None = None
) -> None:
    """Grade C{students} (in parallel) and compare each verdict with its hand verdict."""
    with ThreadPoolExecutor(PARALLEL) as pool:
        graded = list(
            pool.map(lambda student: grade(student, interpreter or sys.executable), students)
        )
    found = []
    for student, result in zip(students, graded, strict=True):
        found += disagreements(student, result)
        if result["seconds"] >= MOST_SECONDS:
            found.append(f"{student.name}: graded in {result['seconds']:.0f} s")
        if result["max_rss_kib"] >= MOST_KIB:
            found.append(f"{student.name}: {result['max_rss_kib']} KiB resident")
        try:
            wait_for(nothing_left_of(result["marker"]), timeout=10)
        except AssertionError:
            found.append(f"{student.name}: processes left: {still_running(result['marker'])}")
    case.assertEqual(found, [], "\n".join(found))


class CorpusTests(SynchronousTestCase):
    def test_every_verdict_on_python_3_tcp_servers_is_the_hand_verdict(self) -> None:
        assert_corpus(self, PYTHON3_TCP)

    def test_every_verdict_on_python_3_udp_servers_is_the_hand_verdict(self) -> None:
        assert_corpus(self, PYTHON3_UDP)

    def test_every_verdict_on_the_python_2_textbook_servers_is_the_hand_verdict(self) -> None:
        assert_corpus(self, PYTHON2, python_2())

    def test_the_documentation_shows_every_hand_verdict(self) -> None:
        """docs/grading.md's corpus table has a row per server, as the hand verdicts say."""
        guide = (PROJECT / "docs" / "grading.md").read_text()
        for student in PYTHON3_TCP + PYTHON3_UDP + PYTHON2:
            self.assertIn(student.documented_row(), guide)

    def test_every_corpus_server_has_a_row(self) -> None:
        """A server added to the corpus folder without hand verdicts is not graded: say so."""
        rows = {student.name for student in PYTHON3_TCP + PYTHON3_UDP + PYTHON2}
        corpus = {
            path.stem
            for path in STUDENT_SERVERS.glob("*.py")
            if path.read_text().startswith('"""\nCorpus: ')
        }
        self.assertEqual(corpus - rows, set())

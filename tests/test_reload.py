"""
Reload (SIGHUP) through real processes: C{--workers} replaced one at a time
under a load that counts every refusal, reset and wrong reply; TLS
certificates re-read for new connections.
"""

import os
import random
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.servers import (
    HOST,
    Daemon,
    alive,
    course_tcp_client,
    course_udp_client,
    exited,
    kill_at_cleanup,
    receive,
    running_workers,
    start_unix_workers,
    start_workers,
    unix_exchange,
    wait_for,
)

#: The package's source folder, which a test copies to play an installed version.
PACKAGE = Path(__file__).resolve().parent.parent / "twisted_caps"
IGNORE_CACHES = shutil.ignore_patterns("__pycache__")
#: Seconds of load before the reload, and after it is done.
LOAD_AROUND_RELOAD = 1.0
#: Seconds a long-lived connection stays open, exchanging lines.
LONG_LIVED = 0.8
#: Reloads in a row while clients keep connecting to a UNIX socket.
RELOAD_STORM = 3


def _upper(text: bytes) -> bytes:
    return text.decode().upper().encode()


@dataclass
class LoadCounts:
    """What the clients saw, by outcome: "ok" or the kind of failure."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        with self.lock:
            self.counts[outcome] += 1


def _failure(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(error, socket.timeout):
        return "timeout"
    return type(error).__name__


def short_tcp(port: int, stop: threading.Event, counts: LoadCounts) -> None:
    """Connect, send a sentence, half-close, read the reply to its end; again."""
    rng = random.Random()
    while not stop.is_set():
        sentence = f"short {rng.random()} straße".encode()
        try:
            with socket.create_connection((HOST, port), timeout=5) as client:
                client.sendall(sentence)
                client.shutdown(socket.SHUT_WR)
                reply = receive(client, 1 << 16)
            counts.add("short ok" if reply == _upper(sentence) else "short wrong")
        except OSError as error:
            counts.add(f"short {_failure(error)}")


def long_tcp(port: int, stop: threading.Event, counts: LoadCounts) -> None:
    """Hold a connection for a while, exchanging lines, then close it; again."""
    while not stop.is_set():
        try:
            with socket.create_connection((HOST, port), timeout=5) as client:
                deadline = time.monotonic() + LONG_LIVED
                line = 0
                while time.monotonic() < deadline:
                    sentence = f"long line {line}\n".encode()
                    client.sendall(sentence)
                    reply = receive(client, len(sentence))
                    counts.add("long line ok" if reply == _upper(sentence) else "long wrong")
                    line += 1
                    time.sleep(0.02)
        except OSError as error:
            counts.add(f"long {_failure(error)}")


def udp(port: int, stop: threading.Event, counts: LoadCounts) -> None:
    """Send numbered datagrams one at a time and check each reply."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(3)
        number = 0
        while not stop.is_set():
            message = f"datagram {number}".encode()
            number += 1
            try:
                client.sendto(message, (HOST, port))
                reply, _ = client.recvfrom(2048)
                counts.add("udp ok" if reply == _upper(message) else "udp wrong")
            except OSError as error:
                counts.add(f"udp {_failure(error)}")
            time.sleep(0.005)


def short_unix(path: str, stop: threading.Event, counts: LoadCounts) -> None:
    """Connect to the UNIX socket, send a sentence, half-close, check the reply; again."""
    rng = random.Random()
    while not stop.is_set():
        sentence = f"unix {rng.random()} straße".encode()
        try:
            reply = unix_exchange(path, sentence)
            counts.add("unix ok" if reply == _upper(sentence) else "unix wrong")
        except OSError as error:
            counts.add(f"unix {_failure(error)}")


RELOAD_DONE = b"caps: reload done: 2 workers replaced"


def reloads_or_stop(daemon: Daemon, count: int) -> bool:
    """Whether C{count} reloads are done, or one stopped (its log says why)."""
    return daemon.output.count(RELOAD_DONE) >= count or b"reload stopped" in daemon.output


def run_load_through(daemon: Daemon, reload: Callable[[], None]) -> Counter[str]:
    """Run the load, call C{reload} once it is under way, keep it up after; return counts."""
    assert daemon.tcp_port and daemon.udp_port
    stop, counts = threading.Event(), LoadCounts()
    threads = [
        *(
            threading.Thread(target=short_tcp, args=(daemon.tcp_port, stop, counts))
            for _ in range(3)
        ),
        *(
            threading.Thread(target=long_tcp, args=(daemon.tcp_port, stop, counts))
            for _ in range(3)
        ),
        threading.Thread(target=udp, args=(daemon.udp_port, stop, counts)),
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(LOAD_AROUND_RELOAD)
        reload()
        time.sleep(LOAD_AROUND_RELOAD)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    return counts.counts


class WorkersReloadTests(TestCase):
    def test_workers_replaced_under_load_lose_nothing(self) -> None:
        """
        SIGHUP replaces every worker by a new process while short and
        long-lived TCP connections and UDP run through it: no connection
        is refused or reset, no reply is lost or wrong, and no old worker
        remains.
        """
        daemon, old = start_workers(self, "--shutdown-timeout", "5")

        def reload() -> None:
            daemon.process.send_signal(signal.SIGHUP)
            wait_for(lambda: b"caps: reload done: 2 workers replaced" in daemon.output, 30)
            new = running_workers(daemon)
            kill_at_cleanup(self, list(new.values()))
            self.assertEqual(set(new.values()) & set(old.values()), set())
            wait_for(lambda: all(exited(pid) for pid in old.values()), 15)

        counts = run_load_through(daemon, reload)
        failures = {outcome: n for outcome, n in counts.items() if not outcome.endswith(" ok")}
        self.assertEqual(failures, {}, counts)
        for kind in ("short ok", "long line ok", "udp ok"):
            self.assertGreater(counts[kind], 20, counts)
        output = daemon.output
        self.assertNotIn(b"Traceback", output)
        self.assertEqual(output.count(b"caps: retiring: accepting no more"), 2)
        self.assertEqual(daemon.stop(), -signal.SIGTERM)


class UnixListenerReloadTests(TestCase):
    def test_reload_storm_on_a_unix_listener_loses_nothing(self) -> None:
        """
        Several SIGHUPs in a row replace the workers of a C{unix:} listener
        while clients keep connecting through its file: every client gets
        its exact reply (no ENOENT, refusal or reset), every reload is done,
        and the file stays until the parent stops, which removes it and its
        lock (a retiring worker removed the file, so the next worker could
        not start and new clients found no socket).
        """
        folder = tempfile.mkdtemp(prefix="caps-reload-")
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        path = os.path.join(folder, "caps.sock")
        daemon = start_unix_workers(self, path, "--shutdown-timeout", "5")
        stop, counts = threading.Event(), LoadCounts()
        threads = [threading.Thread(target=short_unix, args=(path, stop, counts)) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for reload in range(1, RELOAD_STORM + 1):
                daemon.process.send_signal(signal.SIGHUP)
                wait_for(partial(reloads_or_stop, daemon, reload))
                kill_at_cleanup(self, list(running_workers(daemon).values()))
                self.assertEqual(daemon.output.count(RELOAD_DONE), reload, daemon.output[-2000:])
                self.assertTrue(os.path.exists(path))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        failures = {outcome: n for outcome, n in counts.counts.items() if outcome != "unix ok"}
        self.assertEqual(failures, {}, counts.counts)
        self.assertGreater(counts.counts["unix ok"], 20, counts.counts)
        self.assertNotIn(b"Traceback", daemon.output)
        self.assertEqual(daemon.stop(), -signal.SIGTERM)
        self.assertEqual(os.listdir(folder), [])


class UpgradeByReloadTests(TestCase):
    def setUp(self) -> None:
        """A copy of the package, first on the path: the code an upgrade replaces."""
        self.installed = os.path.abspath(self.mktemp())
        shutil.copytree(PACKAGE, os.path.join(self.installed, "twisted_caps"), ignore=IGNORE_CACHES)

    def upgrade(self, first_line: str) -> None:
        """Replace the installed worker module by one that starts with C{first_line}."""
        module = Path(self.installed, "twisted_caps", "operating", "worker_process.py")
        module.write_text(first_line + "\n" + module.read_text())

    def start(self) -> tuple[Daemon, dict[int, int]]:
        return start_workers(self, environment={"PYTHONPATH": self.installed})

    def test_reload_runs_the_code_installed_now(self) -> None:
        """
        Workers started by a reload run the code installed at the time of
        the reload (pip install -U, then SIGHUP), and serve.
        """
        daemon, old = self.start()
        self.upgrade('import sys; sys.stdout.write("caps: upgraded code\\n")')
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: b"caps: reload done: 2 workers replaced" in daemon.output)
        kill_at_cleanup(self, list(running_workers(daemon).values()))
        self.assertEqual(daemon.output.count(b": caps: upgraded code"), 2)
        assert daemon.tcp_port and daemon.udp_port
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"new code"), b"NEW CODE")
        self.assertEqual(course_udp_client(daemon.udp_port, b"new code"), b"NEW CODE")
        wait_for(lambda: all(exited(pid) for pid in old.values()))

    def test_broken_upgrade_keeps_the_old_workers(self) -> None:
        """
        If the code installed now cannot start a worker, the reload stops
        with one line and the old workers keep serving, not restarted.
        """
        daemon, old = self.start()
        self.upgrade('raise SystemExit("broken upgrade")')
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: b"caps: reload stopped" in daemon.output)
        self.assertEqual(running_workers(daemon)[1], old[1])
        for pid in old.values():
            self.assertTrue(alive(pid))
        assert daemon.tcp_port
        for _ in range(10):
            self.assertEqual(course_tcp_client(daemon.tcp_port, b"old code"), b"OLD CODE")
        output = daemon.output
        self.assertEqual(output.count(b"caps: reload stopped: the new worker 0"), 1)
        self.assertNotIn(b"restarting", output)
        self.assertNotIn(b"Traceback", output)
        self.assertNotIn(b"caps: retiring", output)

"""
Every signal a stranger (or a careless operator) can send, at the worst
moments: during start-up, while serving, during the shutdown drain, twice,
to the parent and to a worker, to the whole process group; under
C{twistd -n}, daemonized C{twistd} and C{twist}. Promises checked: no
death by a signal's default action, no traceback, the documented exit
status, no pidfile left behind, and the service still answering.
"""

import os
import re
import signal
import socket
import subprocess
import time

from twisted.trial.unittest import TestCase

from tests.servers import (
    BIN,
    HOST,
    Daemon,
    alive,
    course_tcp_client,
    course_udp_client,
    exited,
    kill_at_cleanup,
    require_program,
    running_workers,
    start_daemonized,
    start_process,
    start_workers,
    twistd,
    wait_for,
)

LOOPBACK = ("-i", HOST, "-p", "0")
#: The signals that must never end the service.
NOT_FATAL = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
#: The line each of them logs when the service logs to standard output.
EFFECTS = {
    signal.SIGHUP: b"caps: reloading (SIGHUP)",
    signal.SIGUSR1: b"caps: no log file to reopen (SIGUSR1)",
    signal.SIGUSR2: b"caps: status: pid",
}
#: What no log may ever show.
NEVER = (b"Traceback", b"ReactorNotRunning", b"Unhandled")


def twist(*argv: str) -> list[str]:
    return [os.path.join(BIN, "twist"), "--log-format", "text", "caps", *argv]


class SignalsTestCase(TestCase):
    def assertAnswers(self, daemon: Daemon) -> None:
        assert daemon.tcp_port and daemon.udp_port
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"alive"), b"ALIVE")
        self.assertEqual(course_udp_client(daemon.udp_port, b"alive"), b"ALIVE")

    def assertClean(self, output: bytes) -> None:
        for forbidden in NEVER:
            self.assertNotIn(forbidden, output)

    def hold_connection(self, daemon: Daemon) -> socket.socket:
        """A client that stays connected, so that a shutdown has something to drain."""
        assert daemon.tcp_port
        held = socket.create_connection((HOST, daemon.tcp_port), timeout=10)
        self.addCleanup(held.close)
        held.sendall(b"held")
        self.assertEqual(held.recv(1024), b"HELD")
        return held


class ServingTests(SignalsTestCase):
    def check_not_fatal(self, command: list[str]) -> None:
        """Send HUP, USR1 and USR2 three times each, waiting for each one's log line."""
        daemon = start_process(self, command)
        for sent in range(1, 4):
            for signum, effect in EFFECTS.items():
                daemon.process.send_signal(signum)
                wait_for(lambda e=effect, n=sent: daemon.output.count(e) == n)  # type: ignore[misc]
            self.assertAnswers(daemon)
        self.assertIsNone(daemon.process.poll())
        self.assertEqual(daemon.stop(signal.SIGTERM), -signal.SIGTERM)
        self.assertClean(daemon.output)

    def test_twistd_n_survives_hup_usr1_usr2(self) -> None:
        """C{twistd -n}: HUP, USR1 and USR2, each three times, and it still serves."""
        self.check_not_fatal(twistd(*LOOPBACK))

    def test_twist_survives_hup_usr1_usr2(self) -> None:
        """C{twist}: the same signals do the same."""
        self.check_not_fatal(twist(*LOOPBACK))

    def test_usr2_status_line_counts_open_connections(self) -> None:
        """SIGUSR2 logs one status line that counts the connections open now."""
        daemon = start_process(self, twistd(*LOOPBACK))
        self.hold_connection(daemon)
        daemon.process.send_signal(signal.SIGUSR2)
        wait_for(lambda: b"1 TCP connections open, 1 accepted" in daemon.output)

    def test_daemonized_twistd_survives_and_removes_its_pidfile(self) -> None:
        """
        Daemonized: HUP, USR1 and USR2 leave it serving; SIGTERM ends it and
        removes the pidfile.
        """
        daemon = start_daemonized(self, *LOOPBACK)
        for signum in NOT_FATAL:
            os.kill(daemon.pid, signum)
        wait_for(lambda: b"caps: status: pid" in daemon.log)
        self.assertTrue(alive(daemon.pid))
        self.assertEqual(course_tcp_client(daemon.ports["TCP"], b"daemon"), b"DAEMON")
        os.kill(daemon.pid, signal.SIGTERM)
        wait_for(lambda: not alive(daemon.pid))
        self.assertFalse(os.path.exists(daemon.pidfile))
        self.assertClean(daemon.log)


class StartUpTests(SignalsTestCase):
    def check_signals_at_start(self, command: list[str], started: bytes) -> Daemon:
        """Send every non-fatal signal as soon as C{started} is logged, before serving."""
        log_path = os.path.abspath(self.mktemp())
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        daemon = Daemon(process, log_path)
        self.addCleanup(daemon.stop, signal.SIGKILL)
        wait_for(lambda: started in daemon.output or process.poll() is not None)
        for signum in NOT_FATAL:
            process.send_signal(signum)
        wait_for(lambda: re.search(rb"serving UDP on [\d.]+:(\d+)", daemon.output))
        wait_for(lambda: daemon.output.count(b"caps: status: pid") >= 1)
        self.assertIsNone(process.poll())
        ports = dict(re.findall(rb"serving (TCP|UDP) on [\d.]+:(\d+)", daemon.output))
        daemon.tcp_port, daemon.udp_port = int(ports[b"TCP"]), int(ports[b"UDP"])
        return daemon

    def test_twistd_n_signals_during_start_up(self) -> None:
        """Signals that arrive while twistd is starting are handled once it runs."""
        daemon = self.check_signals_at_start(twistd(*LOOPBACK), b"starting up")
        self.assertAnswers(daemon)
        self.assertEqual(daemon.stop(), -signal.SIGTERM)
        self.assertClean(daemon.output)

    def test_sigterm_during_start_up_stops_cleanly(self) -> None:
        """SIGTERM while starting: the service starts, then stops, exit status SIGTERM."""
        log_path = os.path.abspath(self.mktemp())
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                twistd(*LOOPBACK), stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        daemon = Daemon(process, log_path)
        self.addCleanup(daemon.stop, signal.SIGKILL)
        wait_for(lambda: b"starting up" in daemon.output or process.poll() is not None)
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=30), -signal.SIGTERM)
        self.assertClean(daemon.output)

    def test_workers_signals_during_start_up(self) -> None:
        """With C{--workers 2}: signals while the workers start leave two serving."""
        daemon = self.check_signals_at_start(twistd("--workers", "2", *LOOPBACK), b"starting up")
        kill_at_cleanup(self, list(running_workers(daemon).values()))
        wait_for(lambda: b"caps: reload done" in daemon.output)
        kill_at_cleanup(self, list(running_workers(daemon).values()))
        self.assertAnswers(daemon)
        self.assertEqual(daemon.stop(), -signal.SIGTERM)
        self.assertClean(daemon.output)


class ShutdownTests(SignalsTestCase):
    def check_signals_during_drain(self, daemon: Daemon, first: int) -> None:
        """
        Stop with C{first} while a client holds a connection (the drain lasts
        the shutdown timeout), then send every signal again during the drain.
        """
        self.hold_connection(daemon)
        daemon.process.send_signal(first)
        wait_for(lambda: b"shutting down" in daemon.output)
        for signum in (*NOT_FATAL, signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
            daemon.process.send_signal(signum)
            time.sleep(0.01)
        self.assertEqual(daemon.process.wait(timeout=30), -first)
        output = daemon.output
        self.assertClean(output)
        self.assertEqual(output.count(b": already stopping"), 3)
        self.assertEqual(output.count(b"while stopping: ignored"), 3)

    def test_second_sigterm_during_drain(self) -> None:
        """
        A second (and third) SIGTERM, a SIGINT and HUP/USR1/USR2 during the
        drain: one line each, no ReactorNotRunning, exit status SIGTERM.
        """
        daemon = start_process(self, twistd("--shutdown-timeout", "2", *LOOPBACK))
        self.check_signals_during_drain(daemon, signal.SIGTERM)

    def test_sigint_then_sigterm_during_drain(self) -> None:
        """SIGINT first (Ctrl-C), then the rest: exit status SIGINT."""
        daemon = start_process(self, twistd("--shutdown-timeout", "2", *LOOPBACK))
        self.check_signals_during_drain(daemon, signal.SIGINT)

    def test_twist_second_sigterm_during_drain(self) -> None:
        """C{twist} behaves as twistd does."""
        daemon = start_process(self, twist("--shutdown-timeout", "2", *LOOPBACK))
        self.check_signals_during_drain(daemon, signal.SIGTERM)

    def test_workers_second_sigterm_during_drain(self) -> None:
        """With C{--workers 2}, the parent and the workers stop once, all of them."""
        daemon, workers = start_workers(self, "--shutdown-timeout", "2")
        self.check_signals_during_drain(daemon, signal.SIGTERM)
        for pid in workers.values():
            self.assertTrue(exited(pid))
        self.assertNotIn(b"restarting", daemon.output)

    def test_daemonized_second_sigterm_removes_pidfile(self) -> None:
        """Daemonized, two SIGTERMs during the drain: it exits and the pidfile is gone."""
        daemon = start_daemonized(self, "--shutdown-timeout", "2", *LOOPBACK)
        held = socket.create_connection((HOST, daemon.ports["TCP"]), timeout=10)
        self.addCleanup(held.close)
        held.sendall(b"x")
        self.assertEqual(held.recv(10), b"X")
        os.kill(daemon.pid, signal.SIGTERM)
        wait_for(lambda: b"shutting down" in daemon.log)
        os.kill(daemon.pid, signal.SIGTERM)
        os.kill(daemon.pid, signal.SIGHUP)
        wait_for(lambda: not alive(daemon.pid))
        self.assertFalse(os.path.exists(daemon.pidfile))
        self.assertIn(b"caps: received SIGTERM: already stopping", daemon.log)
        self.assertClean(daemon.log)


class WorkerSignalTests(SignalsTestCase):
    def test_signals_sent_to_a_worker_leave_it_serving(self) -> None:
        """
        HUP, USR1, USR2 and INT sent to a worker itself are the parent's
        business: the worker ignores them and keeps serving.
        """
        daemon, workers = start_workers(self)
        for pid in workers.values():
            for signum in (*NOT_FATAL, signal.SIGINT):
                os.kill(pid, signum)
        time.sleep(0.2)  # the signals are delivered at once; give a wrong handler time to act
        self.assertEqual(running_workers(daemon), workers)
        for pid in workers.values():
            self.assertTrue(alive(pid))
        for _ in range(10):
            self.assertAnswers(daemon)
        self.assertClean(daemon.output)

    def test_hangup_of_the_whole_process_group(self) -> None:
        """
        A terminal hangup reaches the parent and every worker: the parent
        reloads, the workers are replaced, and nothing dies of it.
        """
        command = [require_program("setsid"), *twistd("--workers", "2", *LOOPBACK)]
        daemon = start_process(self, command)
        wait_for(lambda: len(running_workers(daemon)) == 2)
        old = running_workers(daemon)
        kill_at_cleanup(self, list(old.values()))
        wait_for(lambda: daemon.output.count(b": caps: ready") == 2)
        os.killpg(daemon.process.pid, signal.SIGHUP)
        wait_for(lambda: b"caps: reload done: 2 workers replaced" in daemon.output)
        kill_at_cleanup(self, list(running_workers(daemon).values()))
        self.assertIsNone(daemon.process.poll())
        self.assertAnswers(daemon)
        self.assertEqual(daemon.stop(), -signal.SIGTERM)
        self.assertClean(daemon.output)


class ReloadSignalTests(SignalsTestCase):
    def test_sigterm_during_a_reload_stops_old_and_new_workers(self) -> None:
        """
        SIGTERM while a reload is replacing the workers: the parent stops
        every worker, old, new and retiring, waits for them, and exits with
        the SIGTERM status; no worker is left running.
        """
        daemon, _ = start_workers(self, "--shutdown-timeout", "2")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: len(re.findall(rb"caps: worker \d started", daemon.output)) == 3)
        every = [int(pid) for pid in re.findall(rb"started, pid (\d+)", daemon.output)]
        kill_at_cleanup(self, every)
        self.assertEqual(daemon.stop(signal.SIGTERM), -signal.SIGTERM)
        every = [int(pid) for pid in re.findall(rb"started, pid (\d+)", daemon.output)]
        kill_at_cleanup(self, every)
        for pid in every:
            self.assertTrue(exited(pid), pid)
        self.assertClean(daemon.output)

    def test_hup_twice_in_a_row(self) -> None:
        """
        A second SIGHUP while a reload is under way is one line; after the
        reload two workers serve and every replaced one has exited.
        """
        daemon, old = start_workers(self)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: b"caps: reloading (SIGHUP)" in daemon.output)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: b"caps: reload done" in daemon.output)
        new = running_workers(daemon)
        kill_at_cleanup(self, list(new.values()))
        wait_for(lambda: all(exited(pid) for pid in old.values()))
        self.assertEqual(daemon.output.count(b"caps: a reload is already under way: ignored"), 1)
        self.assertEqual(len(new), 2)
        for pid in new.values():
            self.assertTrue(alive(pid))
        self.assertAnswers(daemon)
        self.assertClean(daemon.output)

    def test_sigterm_while_replaced_workers_drain(self) -> None:
        """
        SIGTERM while replaced workers are still finishing connections held
        open by clients: every worker stops once, quietly, and the parent
        exits with the SIGTERM status.
        """
        daemon, old = start_workers(self, "--shutdown-timeout", "3")
        for _ in range(6):
            self.hold_connection(daemon)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: b"caps: reload done" in daemon.output)
        kill_at_cleanup(self, list(running_workers(daemon).values()))
        self.assertTrue(any(alive(pid) for pid in old.values()))
        self.assertEqual(daemon.stop(signal.SIGTERM), -signal.SIGTERM)
        for pid in old.values():
            self.assertTrue(exited(pid))
        self.assertClean(daemon.output)

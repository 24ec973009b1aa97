"""
deploy/systemd: the unit files are valid, and the command they run serves a
TCP socket handed over by systemd socket activation.
"""

import configparser
import os
import shlex
import shutil
import signal
import socket
import subprocess
from functools import partial

from twisted.trial.unittest import SkipTest, TestCase

from tests.servers import (
    BIN,
    Daemon,
    alive,
    closed_within,
    logged_ports,
    read_to_end,
    require_program,
    twistd,
    wait_for,
)

UNITS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy", "systemd"
)
INSTALLED_TWISTD = "/opt/twisted-caps/bin/twistd"
HOST = "127.0.0.1"


def read_unit(name: str) -> configparser.ConfigParser:
    """A unit file's sections and settings (the last one wins for a repeated key)."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    with open(os.path.join(UNITS, name)) as file:
        unit.read_file(file)
    return unit


def exec_start_on_loopback() -> list[str]:
    """
    caps.service's command, run with this checkout's twistd and its UDP
    listener moved to a free loopback port.
    """
    argv = shlex.split(read_unit("caps.service")["Service"]["ExecStart"])
    assert argv[0] == INSTALLED_TWISTD, argv
    command = [os.path.join(BIN, "twistd")]
    arguments = iter(argv[1:])
    for argument in arguments:
        command.append(argument)
        if argument == "--udp":
            next(arguments)
            command.append(f"{HOST}:0")
    return command


def unused_tcp_port(host: str | None = HOST) -> int:
    """A TCP port free on C{host}, or on C{[::]} and so on every address for None."""
    family = socket.AF_INET6 if host is None else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host or "::", 0))
        return int(probe.getsockname()[1])


class UnitFileTests(TestCase):
    def test_service_runs_unprivileged_restarts_and_takes_the_socket(self) -> None:
        service = read_unit("caps.service")
        settings = service["Service"]
        self.assertEqual(settings["DynamicUser"], "yes")
        self.assertNotIn("User", settings)  # a fixed User= would need creating first
        self.assertEqual(settings["Restart"], "on-failure")
        self.assertIn("caps.socket", service["Unit"]["Requires"].split())
        argv = shlex.split(settings["ExecStart"])
        self.assertEqual(argv[1:5], ["--nodaemon", "--pidfile=", "--logfile=-", "caps"])
        self.assertEqual(argv[argv.index("--tcp") + 1], "systemd:domain=INET:index=0")

    def test_socket_is_ipv4_stream_with_a_name(self) -> None:
        settings = read_unit("caps.socket")["Socket"]
        self.assertEqual(settings["ListenStream"], "0.0.0.0:1200")  # domain=INET
        self.assertEqual(settings["FileDescriptorName"], "caps")

    def test_systemd_analyze_verify_accepts_the_units(self) -> None:
        analyze = require_program("systemd-analyze")
        directory = self.mktemp()
        os.makedirs(directory)
        shutil.copy(os.path.join(UNITS, "caps.socket"), directory)
        with open(os.path.join(UNITS, "caps.service")) as source:
            text = source.read().replace(INSTALLED_TWISTD, os.path.join(BIN, "twistd"))
        with open(os.path.join(directory, "caps.service"), "w") as target:
            target.write(text)
        done = subprocess.run(
            [
                analyze,
                "verify",
                *(os.path.join(directory, unit) for unit in ("caps.socket", "caps.service")),
            ],
            capture_output=True,
            timeout=60,
        )
        self.assertEqual((done.returncode, done.stdout + done.stderr), (0, b""))


class SocketActivationTests(TestCase):
    def test_serves_the_socket_systemd_passes(self) -> None:
        activate = require_program("systemd-socket-activate")
        port = unused_tcp_port()
        name = read_unit("caps.socket")["Socket"]["FileDescriptorName"]
        command = [activate, "--listen", f"{HOST}:{port}", f"--fdname={name}"]
        log_path = os.path.abspath(self.mktemp())
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [*command, *exec_start_on_loopback()],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        daemon = Daemon(process, log_path)
        self.addCleanup(daemon.stop)
        wait_for(lambda: f"Listening on {HOST}:{port}".encode() in daemon.output)
        # caps starts on the first connection, which waits in the backlog.
        with socket.create_connection((HOST, port), timeout=15) as client:
            client.sendall(b"hello systemd")
            client.shutdown(socket.SHUT_WR)
            reply = b"".join(iter(lambda: client.recv(4096), b""))
        self.assertEqual(reply, b"HELLO SYSTEMD")
        wait_for(lambda: {"TCP", "UDP"} <= set(logged_ports(daemon.output)))
        self.assertEqual(logged_ports(daemon.output)["TCP"], port)


#: Ports drawn for an activation before giving up: another program may bind one first.
ACTIVATION_ATTEMPTS = 3


def stop_if_alive(pid: int) -> None:
    """SIGTERM process C{pid}, a daemon, unless it is gone; wait until it is."""
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid))


def listening_or_exited(daemon: Daemon) -> bool:
    """Whether the activator listens, or has exited (its output says why)."""
    return b"Listening on " in daemon.output or daemon.process.poll() is not None


def activated(
    case: TestCase,
    host: str | None,
    *argv: str,
    activate_options: tuple[str, ...] = (),
    twistd_options: tuple[str, ...] = ("--nodaemon", "--pidfile="),
) -> tuple[Daemon, int]:
    """
    Run C{systemd-socket-activate --listen [HOST:]PORT twistd TWISTD_OPTIONS
    caps ARGV --no-udp} on a free port (without C{--fdname} among C{activate_options},
    no C{LISTEN_FDNAMES}; without C{host}, C{[::]}), once it listens; caps
    starts on the first connection, which waits in the backlog. A port
    another program took meanwhile is drawn again.
    """
    activate = require_program("systemd-socket-activate")
    for _ in range(ACTIVATION_ATTEMPTS):
        port = unused_tcp_port(host)
        listen = str(port) if host is None else f"{host}:{port}"
        log_path = os.path.abspath(case.mktemp())
        server = [os.path.join(BIN, "twistd"), *twistd_options, "caps", *argv, "--no-udp"]
        command = [activate, "--listen", listen, *activate_options, *server]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        daemon = Daemon(process, log_path)
        case.addCleanup(daemon.stop)
        wait_for(partial(listening_or_exited, daemon))
        if b"Listening on " in daemon.output:
            return daemon, port
        case.assertIn(b"Address already in use", daemon.output)
    case.fail(f"no free port in {ACTIVATION_ATTEMPTS} attempts")


def exchange(port: int, sentence: bytes) -> bytes:
    """Send C{sentence} to 127.0.0.1:C{port}, half-close, return the reply."""
    with socket.create_connection((HOST, port), timeout=15) as client:
        client.sendall(sentence)
        client.shutdown(socket.SHUT_WR)
        return read_to_end(client)


class ActivationWithoutNamesTests(TestCase):
    """Sockets as C{systemd-socket-activate} passes them: no names, the family it chose."""

    def test_index_0_is_served_without_names(self) -> None:
        daemon, port = activated(self, HOST, "--tcp", "systemd:domain=INET:index=0")
        self.assertEqual(exchange(port, b"no names"), b"NO NAMES")
        wait_for(lambda: b"caps: 127.0.0.1 closed after" in daemon.output)
        self.assertIn(f"caps: serving TCP on {HOST}:{port}\n".encode(), daemon.output)

    def test_a_daemonized_twistd_serves_the_socket_after_its_fork(self) -> None:
        """
        C{LISTEN_PID} names the process systemd started; the daemon that
        serves is its forked child, which finds the socket all the same.
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        pidfile = os.path.join(folder, "caps.pid")
        options = ("--pidfile", pidfile, "--logfile", os.path.join(folder, "caps.log"))
        daemon, port = activated(
            self, HOST, "--tcp", "systemd:domain=INET:index=0", twistd_options=options
        )
        self.assertEqual(exchange(port, b"after the fork"), b"AFTER THE FORK")
        wait_for(lambda: os.path.exists(pidfile))
        with open(pidfile) as file:
            served_by = int(file.read())
        self.addCleanup(stop_if_alive, served_by)
        self.assertEqual(daemon.process.wait(timeout=30), 0)
        self.assertNotEqual(served_by, daemon.process.pid)

    def test_a_dual_stack_socket_is_served_as_ipv6_and_limits_one_peer(self) -> None:
        """
        C{-l PORT} binds C{[::]}; with C{domain=INET} caps served it as IPv4,
        logged scrambled addresses with a scope id and, each connection
        looking like a new peer, let C{--max-per-peer 1} admit two from one
        client. Served as the kernel says, one client is one peer. (The
        socket is named, so this holds apart from the names.)
        """
        daemon, port = activated(
            self,
            None,
            "--tcp",
            "systemd:domain=INET:name=caps",
            "--max-per-peer",
            "1",
            activate_options=("--fdname=caps",),
        )
        with socket.create_connection((HOST, port), timeout=15) as first:
            first.sendall(b"first\n")
            self.assertEqual(first.recv(1024), b"FIRST\n")
            with socket.create_connection((HOST, port), timeout=15) as second:
                second.sendall(b"second\n")
                self.assertEqual(read_to_end(second), b"")
            first.sendall(b"still\n")
            self.assertEqual(first.recv(1024), b"STILL\n")
        wait_for(lambda: b"caps: ::ffff:127.0.0.1 closed after" in daemon.output)
        output = daemon.output
        self.assertIn(f"caps: serving TCP on [::]:{port}\n".encode(), output)
        refused = b"caps: refused a connection from ::ffff:127.0.0.1: max-per-peer reached"
        self.assertEqual(output.count(refused), 1, output)
        self.assertEqual(output.count(b"caps: ::ffff:127.0.0.1 closed after"), 1, output)
        self.assertNotIn(b"%", output.partition(b"caps: open files")[2])

    def test_a_datagram_socket_is_refused_in_one_line(self) -> None:
        daemon, port = activated(
            self,
            HOST,
            "--tcp",
            "systemd:domain=INET:index=0",
            activate_options=("--datagram",),
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"wake", (HOST, port))
        self.assertEqual(daemon.process.wait(timeout=30), 1)
        caps_lines = [line for line in daemon.output.splitlines() if line.startswith(b"caps:")]
        self.assertEqual(
            caps_lines,
            [
                b"caps: --tcp systemd:domain=INET:index=0: inherited socket 3 is a datagram"
                b" socket: --tcp takes a listening stream socket (caps binds UDP itself:"
                b" --udp) (see --help)"
            ],
        )
        self.assertNotIn(b"Traceback", daemon.output)

    def test_a_connection_is_refused_in_one_line(self) -> None:
        """C{--accept} passes each connection, not the listening socket: one line, no traceback."""
        daemon, port = activated(
            self,
            HOST,
            "--tcp",
            "systemd:domain=INET:index=0",
            activate_options=("--accept",),
        )
        with socket.create_connection((HOST, port), timeout=15) as client:
            client.sendall(b"accepted")
            client.shutdown(socket.SHUT_WR)
            self.assertEqual(closed_within(client, 15), b"")
        line = (
            b"caps: --tcp systemd:domain=INET:index=0: inherited socket 3 is not listening"
            b" (a connection, as with systemd-socket-activate --accept, cannot be served"
            b" as a listener) (see --help)"
        )
        wait_for(lambda: line in daemon.output)
        caps_lines = [line for line in daemon.output.splitlines() if line.startswith(b"caps:")]
        self.assertEqual(caps_lines, [line])
        self.assertNotIn(b"Traceback", daemon.output)


class MissingSocketTests(TestCase):
    def test_without_an_inherited_socket_is_one_line_and_status_1(self) -> None:
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("LISTEN_")
        }
        done = subprocess.run(
            twistd("--tcp", "systemd:domain=INET:index=0", "--no-udp"),
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env=environment,
        )
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stdout, b"")
        self.assertEqual(
            done.stderr.splitlines(),
            [
                b"caps: --tcp systemd:domain=INET:index=0: no such inherited socket"
                b" (start the service through systemd socket activation) (see --help)"
            ],
        )


class ReloadAndPluginCacheTests(TestCase):
    def test_unit_reloads_with_sighup_and_writes_the_plugin_cache_first(self) -> None:
        settings = read_unit("caps.service")["Service"]
        self.assertEqual(settings["ExecReload"], "/bin/kill -HUP $MAINPID")
        self.assertEqual(settings["ExecStartPre"], f"+{INSTALLED_TWISTD} --help")

    def test_plugin_cache_written_before_start_spares_a_read_only_user(self) -> None:
        """
        A plugin folder the service may not write to (ProtectSystem=strict,
        DynamicUser=: here a read-only bind mount of a copy of the plugin)
        makes every start log "Unable to write to plugin cache"; once the
        unit's ExecStartPre command has run with write access, it does not.
        """
        unshare = require_program("unshare")
        plugins = os.path.abspath(os.path.join(self.mktemp(), "twisted", "plugins"))
        os.makedirs(plugins)
        shutil.copy(os.path.join(UNITS, "..", "..", "twisted_plugins", "caps_plugin.py"), plugins)
        root = os.path.dirname(os.path.dirname(plugins))
        environment = {**os.environ, "PYTHONPATH": root}
        serve = " ".join(shlex.quote(word) for word in twistd("-i", HOST, "-p", "0"))
        read_only = (
            f"mount --bind {plugins} {plugins} && mount -o remount,bind,ro {plugins}"
            f" && exec {serve}"
        )

        def start_read_only() -> bytes:
            log_path = os.path.abspath(self.mktemp())
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [unshare, "--mount", "sh", "-c", read_only],
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    env=environment,
                )
            daemon = Daemon(process, log_path)
            self.addCleanup(daemon.stop)
            wait_for(lambda: {"TCP", "UDP"} <= set(logged_ports(daemon.output)) or process.poll())
            if process.poll() is not None:
                raise SkipTest(f"no read-only bind mount here: {daemon.output!r}")
            daemon.stop()
            return daemon.output

        if b"Unable to write to plugin cache" not in start_read_only():
            # Under Twisted 24.7 no such line reaches twistd's log at
            # start-up: there is no warning to spare.
            raise SkipTest("this Twisted logs no plugin cache error at start-up")
        pre = shlex.split(read_unit("caps.service")["Service"]["ExecStartPre"].lstrip("+"))
        subprocess.run(
            [os.path.join(BIN, "twistd"), *pre[1:]],
            capture_output=True,
            timeout=60,
            check=True,
            env=environment,
        )
        self.assertTrue(os.path.exists(os.path.join(plugins, "dropin.cache")))
        self.assertNotIn(b"Unable to write to plugin cache", start_read_only())

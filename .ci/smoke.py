# -*- test-case-name: tests.test_smoke_script -*-
"""
The installed service answers: start C{twistd -n caps} from a virtual
environment on a free port, send one TCP and one UDP request with plain
sockets, optionally grade it with that environment's C{caps-check}, stop it
with SIGTERM and require the exit docs/limits.md promises: by the signal,
with no traceback.

Usage: python3 .ci/smoke.py VENV [--check]

Standard library only, so any Python can run it against any environment.
Every wait is bounded; the server is killed whatever happens. Exit status 0
when everything held, 1 (with one line saying what did not) otherwise.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
SERVING = re.compile(rb"serving (TCP|UDP) on [^:\s]+:(\d+)")
#: Generous bounds: CI machines are shared and slow.
START_SECONDS = 60
REPLY_SECONDS = 20
STOP_SECONDS = 30
CHECK_SECONDS = 300


class SmokeError(Exception):
    """One line saying which promise the installed service broke."""


def wait_for_ports(server: subprocess.Popen[bytes], log: Path) -> dict[str, int]:
    """The TCP and UDP ports the server logs it serves, within a deadline."""
    deadline = time.monotonic() + START_SECONDS
    ports: dict[str, int] = {}
    while time.monotonic() < deadline and server.poll() is None:
        ports = {kind.decode(): int(port) for kind, port in SERVING.findall(log.read_bytes())}
        if {"TCP", "UDP"} <= set(ports):
            return ports
        time.sleep(0.05)
    raise SmokeError(f"the server did not start: {log.read_text(errors='replace')!r}")


def tcp_request(port: int) -> None:
    """The lecture's client: send a sentence, read the whole reply until EOF."""
    with socket.create_connection((HOST, port), timeout=REPLY_SECONDS) as client:
        client.sendall("hello straße\n".encode())
        client.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := client.recv(4096):
            reply += chunk
    if reply != "HELLO STRASSE\n".encode():  # noqa: UP012 (the source stays readable)
        raise SmokeError(f"TCP: expected b'HELLO STRASSE\\n', got {reply!r}")


def udp_request(port: int) -> None:
    """One datagram, one reply datagram."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(REPLY_SECONDS)
        client.sendto(b"hello udp", (HOST, port))
        reply, _ = client.recvfrom(2048)
    if reply != b"HELLO UDP":
        raise SmokeError(f"UDP: expected b'HELLO UDP', got {reply!r}")


def grade(environment: Path, port: int) -> None:
    """The environment's caps-check, full profile: every check passes."""
    done = subprocess.run(
        [
            str(environment / "bin" / "caps-check"),
            *("--host", HOST, "-p", str(port), "--profile", "full", "--timeout", "20"),
        ],
        capture_output=True,
        timeout=CHECK_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    print(done.stdout.decode(errors="replace"), end="")
    if done.returncode != 0:
        raise SmokeError(f"caps-check exited {done.returncode}: {done.stderr!r}")


def stop(server: subprocess.Popen[bytes]) -> int:
    """SIGTERM and the exit status; SIGKILL if it does not exit in time."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        raise SmokeError(f"the server ignored SIGTERM for {STOP_SECONDS} s") from None


def smoke(environment: Path, check: bool, workspace: Path) -> None:
    """Serve, ask, optionally grade, stop; raise L{SmokeError} at the first broken promise."""
    log = workspace / "twistd.log"
    # PYTHONPATH unset: the environment's own installation must answer,
    # not a checkout a parent process put on the path.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [
                str(environment / "bin" / "twistd"),
                "-n",
                "--pidfile=",
                "caps",
                "-i",
                HOST,
                "-p",
                "0",
            ],
            stdout=log_file,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            cwd=workspace,
            env=env,
        )
    try:
        ports = wait_for_ports(server, log)
        tcp_request(ports["TCP"])
        udp_request(ports["UDP"])
        if check:
            grade(environment, ports["TCP"])
        status = stop(server)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    output = log.read_bytes()
    if status != -signal.SIGTERM or b"Traceback" in output:
        raise SmokeError(f"twistd exited {status} after SIGTERM: {output[-2000:]!r}")


def main(argv: list[str]) -> int:
    """Run the smoke test against the environment named on the command line."""
    if not argv or argv[0].startswith("-") or set(argv[1:]) - {"--check"}:
        print("usage: smoke.py VENV [--check]", file=sys.stderr)
        return 2
    environment = Path(argv[0]).resolve()
    with tempfile.TemporaryDirectory(prefix="caps-smoke-") as workspace:
        try:
            smoke(environment, "--check" in argv[1:], Path(workspace))
        except (SmokeError, OSError, subprocess.TimeoutExpired) as failure:
            print(f"smoke test of {environment}: {failure}", file=sys.stderr)
            return 1
    print(f"smoke test of {environment}: TCP, UDP and SIGTERM as promised")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""
An autograder: run a student's blocking client against a caps server and
check what it prints. The caps_server fixture comes from twisted-caps'
pytest plugin; no conftest.py is needed.
"""

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from socket import AF_INET, SOCK_DGRAM, SOCK_STREAM, socket

from twisted_caps.testing import CapsServerProcess

STUDENT_CLIENT = Path(__file__).with_name("student_client.py")


def test_student_client_prints_the_capitalized_sentence(caps_server: CapsServerProcess) -> None:
    done = subprocess.run(
        [sys.executable, STUDENT_CLIENT, caps_server.host, str(caps_server.tcp_port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "From Server: HELLO WORLD\n"


def test_blocking_udp_client(caps_server: CapsServerProcess) -> None:
    with socket(AF_INET, SOCK_DGRAM) as client:
        client.settimeout(10)
        client.sendto(b"hello world", (caps_server.host, caps_server.udp_port))
        assert client.recvfrom(2048)[0] == b"HELLO WORLD"


def test_server_with_daemon_options(caps_server_factory: Callable[..., CapsServerProcess]) -> None:
    server = caps_server_factory(once=True)  # twistd caps --once
    with socket(AF_INET, SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect((server.host, server.tcp_port))
        client.send(b"hello world")
        assert client.recv(1024) == b"HELLO WORLD"
        assert client.recv(1024) == b""  # --once: the server closed

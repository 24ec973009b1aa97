"""
The service on real loopback sockets, driven by blocking clients written the
way the course writes them, and by nc, socat and telnet.
"""

import os
import pty
import select
import socket
import subprocess
import time

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.servers import (
    HOST,
    course_tcp_client,
    course_udp_client,
    port_of,
    require_program,
    start_in_reactor,
)
from twisted_caps.core.transform import capitalize


def send_all_then_half_close(port: int, data: bytes) -> bytes:
    """Send everything, shut down the sending side, read until EOF."""
    with socket.create_connection((HOST, port), timeout=30) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def reply_before_sending_the_rest(port: int) -> tuple[bytes, bytes]:
    """Send half a sentence, read its reply, then send the rest."""
    with socket.create_connection((HOST, port), timeout=10) as client:
        client.sendall(b"hello ")
        first = client.recv(1024)
        client.sendall(b"world")
        client.shutdown(socket.SHUT_WR)
        rest = client.recv(1024)
    return first, rest


def run(command: list[str], stdin: bytes) -> bytes:
    return subprocess.run(command, input=stdin, capture_output=True, timeout=20, check=True).stdout


def type_into_terminal(command: list[str], typed: bytes, expect: bytes) -> bytes:
    """
    Run an interactive program on a pseudo-terminal, as a person would:
    wait for it to connect, type a line, read until C{expect} is shown.
    """
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    screen = b""
    deadline = time.monotonic() + 20
    try:
        while expect not in screen and time.monotonic() < deadline:
            if b"Escape character" in screen and typed:
                os.write(controller, typed)
                typed = b""
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                screen += os.read(controller, 4096)
    finally:
        process.kill()
        process.wait()
        os.close(controller)
    return screen


class CourseClientTests(TestCase):
    async def test_tcp_client_gets_the_sentence_capitalized(self) -> None:
        port = port_of(start_in_reactor(self), "TCP")
        reply = await deferToThread(course_tcp_client, port, b"hello world")
        self.assertEqual(reply, b"HELLO WORLD")

    async def test_udp_client_gets_the_sentence_capitalized(self) -> None:
        port = port_of(start_in_reactor(self), "UDP")
        reply = await deferToThread(course_udp_client, port, "hello straße".encode())
        self.assertEqual(reply, b"HELLO STRASSE")

    async def test_empty_datagram_gets_empty_reply(self) -> None:
        port = port_of(start_in_reactor(self), "UDP")
        self.assertEqual(await deferToThread(course_udp_client, port, b""), b"")

    async def test_once_closes_after_the_first_answer(self) -> None:
        port = port_of(start_in_reactor(self, "--once"), "TCP")
        reply = await deferToThread(send_all_then_half_close, port, b"only")
        self.assertEqual(reply, b"ONLY")


class StreamOverKernelTests(TestCase):
    async def test_reply_starts_before_the_client_stops_sending(self) -> None:
        port = port_of(start_in_reactor(self), "TCP")
        first, rest = await deferToThread(reply_before_sending_the_rest, port)
        self.assertEqual((first, rest), (b"HELLO ", b"WORLD"))

    async def test_half_close_gets_every_reply_then_eof(self) -> None:
        port = port_of(start_in_reactor(self), "TCP")
        data = ("straße ﬁ привет\n".encode() + bytes(range(256))) * 2000
        reply = await deferToThread(send_all_then_half_close, port, data)
        self.assertEqual(reply, capitalize(data))


class ToolTests(TestCase):
    async def test_nc_with_half_close(self) -> None:
        nc = require_program("nc")
        port = port_of(start_in_reactor(self), "TCP")
        output = await deferToThread(run, [nc, "-N", HOST, str(port)], b"a\nb\n")
        self.assertEqual(output, b"A\nB\n")

    async def test_nc_udp(self) -> None:
        nc = require_program("nc")
        port = port_of(start_in_reactor(self), "UDP")
        output = await deferToThread(run, [nc, "-u", "-w", "1", HOST, str(port)], b"udp hello\n")
        self.assertEqual(output, b"UDP HELLO\n")

    async def test_plain_nc_against_once(self) -> None:
        nc = require_program("nc")
        port = port_of(start_in_reactor(self, "--once"), "TCP")
        output = await deferToThread(run, [nc, HOST, str(port)], b"hello world\n")
        self.assertEqual(output, b"HELLO WORLD\n")

    async def test_socat(self) -> None:
        socat = require_program("socat")
        port = port_of(start_in_reactor(self), "TCP")
        output = await deferToThread(run, [socat, "-", f"TCP:{HOST}:{port}"], "grüße\n".encode())
        self.assertEqual(output, "GRÜSSE\n".encode())

    async def test_socat_udp(self) -> None:
        socat = require_program("socat")
        port = port_of(start_in_reactor(self), "UDP")
        output = await deferToThread(run, [socat, "-t", "2", "-", f"UDP:{HOST}:{port}"], b"dgram\n")
        self.assertEqual(output, b"DGRAM\n")

    async def test_telnet(self) -> None:
        telnet = require_program("telnet")
        port = port_of(start_in_reactor(self), "TCP")
        screen = await deferToThread(
            type_into_terminal, [telnet, HOST, str(port)], b"hello telnet\n", b"HELLO TELNET"
        )
        self.assertIn(b"HELLO TELNET", screen)

# -*- test-case-name: tests.test_client -*-
"""
The C{caps-client} command: print the capitalization of its arguments, or
of each line of standard input, as a caps server gives it.
"""

import os
import signal
import sys
from typing import Any

from twisted.internet import error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.task import react
from twisted.internet.threads import deferToThread
from twisted.python import usage

from twisted_caps import __version__
from twisted_caps.client import (
    DEFAULT_TIMEOUT,
    PROMPT,
    capitalize_over_tcp,
    capitalize_over_udp,
    tls_client_options,
)
from twisted_caps.core.addresses import host_port
from twisted_caps.core.help_text import HelpfulOptions
from twisted_caps.core.option_values import MAX_SECONDS, one_line, port_number, quoted, seconds


class ClientOptions(HelpfulOptions):
    """
    Print the capitalization of TEXT, as a caps server gives it. With no
    TEXT, read standard input line by line and print each reply (with a
    prompt when standard input is a terminal; Ctrl-D ends).

    With --tls, the server's certificate must name --host and be signed by
    the CA in --ca (a PEM file), or by one the system trusts.

    Exit status: 0 when every reply was printed; 1 with one line on stderr
    ("caps-client: ...") for a bad option, a refused or reset connection,
    an unknown host, a timeout, a server that closes without replying (a
    TLS server asked without --tls does that), a TLS failure, or standard
    output closed by its reader. Ctrl-C (SIGINT) or SIGTERM ends the client
    by that signal, which a shell reports as 130 or 143.
    """

    synopsis = (
        "Usage: caps-client [--host H] [--port P] [--udp | --tls [--ca FILE]] [--timeout S]"
        " [TEXT...]"
    )
    description = __doc__
    version = f"caps-client (twisted-caps {__version__})"
    optParameters = [
        ["host", None, "localhost", "Server host name or address."],
        ["port", "p", "1200", "Server port (1-65535)."],
        [
            "timeout",
            "t",
            f"{DEFAULT_TIMEOUT:g}",
            f"Seconds to wait for each reply (more than 0, at most {MAX_SECONDS:,}).",
        ],
        ["ca", None, None, "With --tls: trust only the CA certificate(s) in this PEM file."],
    ]
    optFlags = [
        ["udp", "u", "Use UDP instead of TCP."],
        ["tls", None, "Use TLS over TCP, verifying the server's certificate and host name."],
    ]

    def parseArgs(self, *text: str) -> None:
        self["text"] = list(text)

    def postOptions(self) -> None:
        host = self["host"]
        if not (isIPAddress(host) or isIPv6Address(host) or _is_host_name(host)):
            raise usage.UsageError(f"--host: {quoted(host)} is not a host name or IP address")
        self["port"] = port_number(self["port"], "--port", lowest=1)
        meaning = f"a number of seconds (more than 0, at most {MAX_SECONDS})"
        self["timeout"] = seconds(self["timeout"], "--timeout", meaning, positive=True)
        if self["udp"] and self["tls"]:
            raise usage.UsageError("--tls works over TCP only, not with --udp")
        if self["ca"] is not None and not self["tls"]:
            raise usage.UsageError("--ca needs --tls")


def _is_host_name(host: str) -> bool:
    """
    Whether C{host} can be looked up: the resolver encodes it as IDNA, and
    a name it cannot encode (a label over 63 characters, an empty one) fails
    inside Twisted's resolver thread without ever answering.
    """
    try:
        encoded = host.encode("idna")
    except UnicodeError:
        return False
    return 0 < len(encoded) <= 253 and all(0x20 < c < 0x7F for c in encoded)


class NoReplyError(Exception):
    """The server closed the connection without answering the text sent."""


def _describe_failure(failure: Exception, options: ClientOptions) -> str:
    server = host_port(options["host"], options["port"])
    if isinstance(failure, error.ConnectionRefusedError):
        return f"connection refused by {server}"
    if isinstance(failure, error.DNSLookupError):
        return f"cannot resolve host {options['host']!r}"
    if isinstance(failure, error.TimeoutError):
        timeout = options["timeout"]
        return f"no reply from {server} within {timeout:g} second{'' if timeout == 1 else 's'}"
    if isinstance(failure, error.ConnectionLost):
        return f"connection reset by {server}"
    if isinstance(failure, NoReplyError):
        hint = "" if options["tls"] else " (if it serves TLS, use --tls)"
        return f"{server} closed the connection without a reply{hint}"
    return f"{server}: {failure}"


def _tls_options_for(options: ClientOptions) -> IOpenSSLClientConnectionCreator:
    """The TLS settings of C{--tls}; a missing library or bad C{--ca} exits with one line."""
    try:
        from OpenSSL import crypto
    except ImportError:
        raise SystemExit(
            "caps-client: --tls needs pyOpenSSL: pip install 'twisted-caps[tls]'"
        ) from None
    try:
        return tls_client_options(options["host"], options["ca"])
    except ValueError as failure:
        raise SystemExit(one_line(f"caps-client: {failure}")) from None
    except crypto.Error:
        message = f"caps-client: --ca {options['ca']}: not a PEM certificate"
        raise SystemExit(one_line(message)) from None


async def run(reactor: Any, options: ClientOptions) -> None:
    """Carry out one C{caps-client} invocation; failures exit with status 1."""
    # After the reactor's own handlers, which react() has it install as it starts.
    reactor.callWhenRunning(_die_by_signals)
    tls = _tls_options_for(options) if options["tls"] else None

    def send(data: bytes) -> "Deferred[bytes]":
        host, port, timeout = options["host"], options["port"], options["timeout"]
        if options["udp"]:
            return capitalize_over_udp(reactor, host, port, data, timeout=timeout)
        return capitalize_over_tcp(reactor, host, port, data, timeout=timeout, tls=tls)

    async def ask(data: bytes) -> bytes:
        try:
            reply: bytes = await send(data)
            if data and not reply:
                raise NoReplyError()
        except Exception as failure:
            sys.stderr.write(one_line(f"caps-client: {_describe_failure(failure, options)}") + "\n")
            raise SystemExit(1) from None
        return reply

    if options["text"]:
        _print(await ask(os.fsencode(" ".join(options["text"]))) + b"\n")
        return
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            _print(PROMPT)
        line: bytes = await deferToThread(_read_line)
        if not line:
            if interactive:
                # Ctrl-D leaves the cursor after the prompt: the shell's starts a line of its own.
                _print(b"\n")
            return
        _print(await ask(line))


def _read_line() -> bytes:
    """
    Read a line of standard input, in a thread that leaves SIGINT and
    SIGTERM to the main thread: a signal taken by this thread would wake no
    one, and the client would not end.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    return sys.stdin.buffer.readline()


def _print(data: bytes) -> None:
    """Write C{data} to standard output now; a reader gone (C{| head}) ends with status 1."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it somewhere that takes it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise SystemExit(1) from None


def _die_by_signals() -> None:
    """
    Make SIGINT (Ctrl-C) and SIGTERM end the client by that signal, as the
    shell expects of a program it runs (status 130 or 143), not with the
    status 0 of a reactor stopped in good order, nor with a traceback.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _die_by)


def _die_by(signum: int, frame: object) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def main(argv: list[str] | None = None) -> None:
    """Entry point of C{caps-client}."""
    _die_by_signals()
    options = ClientOptions()
    try:
        options.parseOptions(argv)
    except usage.UsageError as failure:
        raise SystemExit(one_line(f"caps-client: {failure} (see --help)")) from None
    react(lambda reactor: ensureDeferred(run(reactor, options)))

# -*- test-case-name: tests.test_check -*-
"""
Run the checks one after another against a server, in the reactor, each
bounded in time: no server can make a run hang. A check's verdict depends
only on what it tests: a check that finds the server gone, after it had
answered earlier checks, is not graded and names the check the server
stopped during; a server caps-check started itself is started again after
a crash, which is reported on the check that caused it.
"""

from collections.abc import Callable, Collection
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import TimeoutError as NoVerdict
from twisted.internet.defer import ensureDeferred

from twisted_caps.check.checks import Check, select_checks
from twisted_caps.check.feedback import CheckError, RefusedError, error_words, seconds
from twisted_caps.check.report import CheckReport, CheckResult, not_graded
from twisted_caps.check.started_server import StartedServer, last_line
from twisted_caps.check.target import Profile, Target, Transport

DEFAULT_TIMEOUT = 5.0
#: Seconds a host name lookup may take, however short the checks' timeout.
RESOLVE_TIMEOUT = 5.0
#: No check waits for more than this many timeouts in a row; past that
#: (plus a second) it is stopped and fails.
WAITS_PER_CHECK = 12
#: What a server that went away stopped doing, by transport.
STOPPED = {
    "tcp": "the server stopped accepting connections",
    "udp": "the server stopped receiving datagrams",
}

OnResult = Callable[[CheckResult], object] | None


def chosen_checks(
    profile: Profile, transports: tuple[Transport, ...], only: Collection[str] | None = None
) -> tuple[Check, ...]:
    """The checks of C{profile} over C{transports}, in order; only those of C{only} if given."""
    checks = select_checks(profile, transports)
    return checks if only is None else tuple(check for check in checks if check.id in only)


async def run_checks(
    reactor: Any,
    host: str = "localhost",
    port: int = 1200,
    profile: Profile = "lecture",
    transports: tuple[Transport, ...] = ("tcp", "udp"),
    timeout: float = DEFAULT_TIMEOUT,
    on_result: OnResult = None,
    only: Collection[str] | None = None,
) -> CheckReport:
    """
    Run the checks of C{profile} over C{transports} (those of C{only}, if
    given) against the server at C{host}:C{port} and return the report;
    C{on_result} is called with each result as soon as it is known. Each
    wait of a check lasts at most C{timeout} seconds.

    A check refused at its first connection (or datagram) after earlier
    checks reached the server over that transport is not graded: the
    server stopped during the last check that reached it, and every later
    check of that transport says so.
    """
    target = Target(reactor, host, host, port, timeout)
    resolution_failure = None
    try:
        target = Target(reactor, host, await _resolve(reactor, host, timeout), port, timeout)
    except Exception:  # DNSLookupError, a time-out, or a name the resolver rejects
        resolution_failure = f"cannot resolve host {host!r}"
    results = []
    reached: set[Transport] = set()
    stopped: dict[Transport, str] = {}
    last_reaching = ""
    for check in chosen_checks(profile, transports, only):
        if resolution_failure is not None:
            result = CheckResult(check.id, False, resolution_failure)
        elif check.transport in stopped:
            result = not_graded(check.id, stopped[check.transport])
        else:
            result, unreached = await _attempt(check, target)
            if unreached and check.transport in reached:
                stopped[check.transport] = f"{STOPPED[check.transport]} during `{last_reaching}`"
                result = not_graded(check.id, stopped[check.transport])
            elif not unreached:
                reached.add(check.transport)
                last_reaching = check.id
        results.append(result)
        if on_result is not None:
            on_result(result)
    return CheckReport(target.server, profile, tuple(results))


async def run_with_server(
    reactor: Any,
    server: StartedServer,
    profile: Profile = "lecture",
    transports: tuple[Transport, ...] = ("tcp", "udp"),
    timeout: float = DEFAULT_TIMEOUT,
    on_result: OnResult = None,
    only: Collection[str] | None = None,
) -> CheckReport:
    """
    Start C{server}, run the checks against it, and return the report. The
    server is started again after any check it stopped during (that check
    is C{crashed}, with the end of the server's output), and for a check
    refused while the server still runs (a thread of it died), which is
    then run once more. The caller stops the server.
    """
    checks = chosen_checks(profile, transports, only)
    start_failure = await server.start()
    if start_failure:
        skipped = tuple(not_graded(check.id, "the server did not start") for check in checks)
        return CheckReport(
            f"{server.host}:{server.port}", profile, skipped, server.output(), start_failure
        )
    name = f"{server.host}:{server.port}"
    results = []
    down = ""
    reached: set[Transport] = set()
    for number, check in enumerate(checks, 1):
        last = number == len(checks)
        if down:
            result = not_graded(check.id, down)
        else:
            result, unreached = await _attempt(check, _target(server, timeout))
            if unreached and check.transport in reached and server.exit_status() is None:
                server.note(f"{STOPPED[check.transport]}: started again for `{check.id}`")
                server.stop()
                down = await _start_again(server, check.id)
                reached.clear()
                if down:
                    result = not_graded(check.id, down)
                else:
                    result, unreached = await _attempt(check, _target(server, timeout))
            # A transport is watched once a check reached the server over it.
            watched = reached | ({check.transport} if not unreached else set())
            status = await server.ended_after(watched)
            if not down and status is not None:
                output = server.output(this_run_only=True)
                server.note(f"the server {status} during `{check.id}`")
                server.stop()
                down = "" if last else await _start_again(server, check.id)
                reached.clear()
                result = _crashed(result, status, output, again=not (down or last))
            elif not unreached:
                reached.add(check.transport)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return CheckReport(name, profile, tuple(results), server.output())


def _target(server: StartedServer, timeout: float) -> Target:
    return Target(server.reactor, server.host, server.host, server.port, timeout)


async def _start_again(server: StartedServer, check_id: str) -> str:
    """Start the server again: C{""}, or why the checks after C{check_id} are not graded."""
    failure = await server.start()
    if not failure:
        return ""
    return f"the server did not start again after `{check_id}`: {failure}"


def _crashed(result: CheckResult, status: str, output: str, again: bool) -> CheckResult:
    """C{result}, made the report of a check the server stopped during."""
    what = result.detail if not result.passed else "the reply was right"
    ending = last_line(output)
    detail = f"{what}; the server {status} during this check"
    if ending:
        detail += f", its output ending with: {ending}"
    if again:
        detail += "; it was started again for the next check"
    return CheckResult(result.id, False, detail, "crashed", output)


async def _resolve(reactor: Any, host: str, timeout: float) -> str:
    """C{host} as an IP address, looked up within C{timeout} seconds (at least 5)."""
    if isIPAddress(host) or isIPv6Address(host):
        return host
    looking_up = reactor.resolve(host).addTimeout(max(timeout, RESOLVE_TIMEOUT), reactor)
    address: str = await looking_up
    return address


async def _run_one(check: Check, target: Target) -> CheckResult:
    """Run C{check}; any failure, of the server or of the run, is one line."""
    result, _ = await _attempt(check, target)
    return result


async def _attempt(check: Check, target: Target) -> tuple[CheckResult, bool]:
    """
    Run C{check}: its result, and whether it was refused at its first
    connection (it never reached the server).
    """
    limit = WAITS_PER_CHECK * target.timeout + 1
    running = ensureDeferred(check.run(target))
    running.addTimeout(limit, target.reactor)
    try:
        await running
    except RefusedError as failure:
        return CheckResult(check.id, False, str(failure)), failure.first_contact
    except CheckError as failure:
        return CheckResult(check.id, False, str(failure)), False
    except NoVerdict:
        return CheckResult(check.id, False, f"no verdict within {seconds(limit)}"), False
    except OSError as failure:  # in words, never an errno
        return CheckResult(check.id, False, error_words(failure)), False
    except Exception as failure:  # a server may provoke what no check foresaw
        detail = f"{type(failure).__name__}: {failure}".replace("\n", " ")
        return CheckResult(check.id, False, detail), False
    finally:
        target.close_all()  # what a check stopped by the limit left open
    return CheckResult(check.id, True), False

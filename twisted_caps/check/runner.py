# -*- test-case-name: tests.test_check -*-
"""
Run the checks one after another against a server, in the reactor, each
bounded in time: no server can make a run hang.
"""

from collections.abc import Callable
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import TimeoutError as NoVerdict
from twisted.internet.defer import ensureDeferred

from twisted_caps.check.checks import Check, select_checks
from twisted_caps.check.feedback import CheckError, seconds
from twisted_caps.check.report import CheckReport, CheckResult
from twisted_caps.check.target import Profile, Target, Transport

DEFAULT_TIMEOUT = 5.0
#: Seconds a host name lookup may take, however short the checks' timeout.
RESOLVE_TIMEOUT = 5.0
#: No check waits for more than this many timeouts in a row; past that
#: (plus a second) it is stopped and fails.
WAITS_PER_CHECK = 12


async def run_checks(
    reactor: Any,
    host: str = "localhost",
    port: int = 1200,
    profile: Profile = "lecture",
    transports: tuple[Transport, ...] = ("tcp", "udp"),
    timeout: float = DEFAULT_TIMEOUT,
    on_result: Callable[[CheckResult], object] | None = None,
) -> CheckReport:
    """
    Run the checks of C{profile} over C{transports} against the server at
    C{host}:C{port} and return the report; C{on_result} is called with each
    result as soon as it is known. Each wait of a check lasts at most
    C{timeout} seconds.
    """
    target = Target(reactor, host, host, port, timeout)
    resolution_failure = None
    try:
        target = Target(reactor, host, await _resolve(reactor, host, timeout), port, timeout)
    except Exception:  # DNSLookupError, a time-out, or a name the resolver rejects
        resolution_failure = f"cannot resolve host {host!r}"
    results = []
    for check in select_checks(profile, transports):
        if resolution_failure is None:
            result = await _run_one(check, target)
        else:
            result = CheckResult(check.id, False, resolution_failure)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return CheckReport(target.server, profile, tuple(results))


async def _resolve(reactor: Any, host: str, timeout: float) -> str:
    """C{host} as an IP address, looked up within C{timeout} seconds (at least 5)."""
    if isIPAddress(host) or isIPv6Address(host):
        return host
    looking_up = reactor.resolve(host).addTimeout(max(timeout, RESOLVE_TIMEOUT), reactor)
    address: str = await looking_up
    return address


async def _run_one(check: Check, target: Target) -> CheckResult:
    """Run C{check}; any failure, of the server or of the run, is one line."""
    limit = WAITS_PER_CHECK * target.timeout + 1
    running = ensureDeferred(check.run(target))
    running.addTimeout(limit, target.reactor)
    try:
        await running
    except CheckError as failure:
        return CheckResult(check.id, False, str(failure))
    except NoVerdict:
        return CheckResult(check.id, False, f"no verdict within {seconds(limit)}")
    except Exception as failure:  # a server may provoke what no check foresaw
        detail = f"{type(failure).__name__}: {failure}".replace("\n", " ")
        return CheckResult(check.id, False, detail)
    finally:
        target.close_all()  # what a check stopped by the limit left open
    return CheckResult(check.id, True)

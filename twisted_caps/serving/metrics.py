# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics, read from the service's plain counters at scrape time so
the byte path pays nothing per message.

prometheus_client serves them through a WSGI resource, so collectors run on
a reactor thread-pool thread: they only read integers, never call the reactor.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.twisted import MetricsResource
from twisted.web.http import Request
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_caps.core.limits import REFUSALS
from twisted_caps.serving.datagram import CapsDatagramProtocol
from twisted_caps.serving.stream import CapsStreamFactory

#: The label values of caps_udp_datagrams_total{result=...}, and the counter
#: of DatagramCounters each one reads.
DATAGRAM_RESULTS = {
    "answered": "answered",
    "loop": "refused_loop",
    "rate-limit": "dropped_rate_limit",
    "oversize": "dropped_oversize",
    "send-error": "dropped_send_error",
}


#: A snapshot of one process's counters: plain numbers, as JSON carries them.
Snapshot = dict[str, Any]


def snapshot(stream: CapsStreamFactory, datagrams: Iterable[CapsDatagramProtocol]) -> Snapshot:
    """Read the counters of a stream factory and its datagram protocols, now."""
    counters = [protocol.counters for protocol in datagrams]
    received, sent = stream.byte_totals()

    def udp(name: str) -> int:
        return sum(getattr(c, name) for c in counters)

    return {
        "open": stream.limits.open,
        "accepted": stream.accepted,
        "refused": {r: stream.refused.get(r, 0) for r in REFUSALS},
        "idle_timeouts": stream.idle_timeouts,
        "pauses": stream.pauses,
        "bytes_received": {"tcp": received, "udp": udp("bytes_received")},
        "bytes_sent": {"tcp": sent, "udp": udp("bytes_sent")},
        "udp_received": udp("received"),
        "udp_results": {result: udp(name) for result, name in DATAGRAM_RESULTS.items()},
    }


class CapsCollector:
    """
    Export counter snapshots: one per process, labelled C{worker} when the
    service runs in several (C{--workers}), unlabelled otherwise.
    """

    def __init__(self, snapshots: Callable[[], Iterable[tuple[str | None, Snapshot]]]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        snapshots = list(self._snapshots())
        worker = ["worker"] if any(name is not None for name, _ in snapshots) else []

        def family(kind: Callable[..., Any], name: str, text: str, *labels: str) -> Any:
            return kind(name, text, labels=[*worker, *labels])

        def add(metric: Any, name: str | None, value: float, *labels: str) -> None:
            metric.add_metric([*([name] if worker else []), *labels], value)

        open_ = family(GaugeMetricFamily, "caps_tcp_connections_open", "TCP connections open now.")
        accepted = family(
            CounterMetricFamily, "caps_tcp_connections_accepted", "TCP connections accepted."
        )
        refused = family(
            CounterMetricFamily,
            "caps_tcp_connections_refused",
            "TCP connections refused, by limit or reason (open-files: no file descriptor"
            " was left; proxy-header: a malformed PROXY header; proxy-header-timeout: a"
            " header not complete in time).",
            "reason",
        )
        idle = family(
            CounterMetricFamily,
            "caps_tcp_idle_timeouts",
            "TCP connections closed after --idle-timeout with no input read and no reply taken.",
        )
        pauses = family(
            CounterMetricFamily,
            "caps_tcp_backpressure_pauses",
            "Times a TCP client was not read from because it was not reading its replies.",
        )
        received = family(
            CounterMetricFamily, "caps_bytes_received", "Bytes received from clients.", "transport"
        )
        sent = family(
            CounterMetricFamily, "caps_bytes_sent", "Bytes of replies sent to clients.", "transport"
        )
        datagrams_received = family(
            CounterMetricFamily, "caps_udp_datagrams_received", "UDP datagrams received."
        )
        datagrams = family(
            CounterMetricFamily,
            "caps_udp_datagrams",
            "UDP datagrams by what became of them: answered, or dropped and why.",
            "result",
        )
        for name, counts in snapshots:
            add(open_, name, counts["open"])
            add(accepted, name, counts["accepted"])
            for reason, value in counts["refused"].items():
                add(refused, name, value, reason)
            add(idle, name, counts["idle_timeouts"])
            add(pauses, name, counts["pauses"])
            for transport, value in counts["bytes_received"].items():
                add(received, name, value, transport)
            for transport, value in counts["bytes_sent"].items():
                add(sent, name, value, transport)
            add(datagrams_received, name, counts["udp_received"])
            for result, value in counts["udp_results"].items():
                add(datagrams, name, value, result)
        yield from (open_, accepted, refused, idle, pauses, received, sent)
        yield from (datagrams_received, datagrams)


class _QuietSite(Site):
    """A site that writes no access log line per scrape."""

    noisy = False

    def log(self, request: Request) -> None:
        pass


def metrics_site(snapshots: Callable[[], Iterable[tuple[str | None, Snapshot]]]) -> Site:
    """An HTTP site serving the counters and this process's metrics at /metrics."""
    registry = CollectorRegistry()
    registry.register(CapsCollector(snapshots))
    ProcessCollector(registry=registry)
    root = Resource()
    resource: Any = MetricsResource(registry)
    root.putChild(b"metrics", resource)
    return _QuietSite(root)

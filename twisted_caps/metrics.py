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

from twisted_caps.datagram import CapsDatagramProtocol
from twisted_caps.limits import MAX_CONNECTIONS, MAX_PER_PEER
from twisted_caps.stream import CapsStreamFactory

#: The label values of caps_udp_datagrams_total{result=...}, and the counter
#: of DatagramCounters each one reads.
DATAGRAM_RESULTS = {
    "answered": "answered",
    "loop": "refused_loop",
    "rate-limit": "dropped_rate_limit",
    "oversize": "dropped_oversize",
    "send-error": "dropped_send_error",
}


class CapsCollector:
    """Export the counters of one stream factory and its datagram protocols."""

    def __init__(
        self,
        stream: CapsStreamFactory,
        datagrams: Callable[[], Iterable[CapsDatagramProtocol]],
    ) -> None:
        self._stream = stream
        self._datagrams = datagrams

    def collect(self) -> Iterator[Metric]:
        stream = self._stream
        counters = [protocol.counters for protocol in self._datagrams()]

        def udp(name: str) -> int:
            return sum(getattr(c, name) for c in counters)

        yield GaugeMetricFamily(
            "caps_tcp_connections_open", "TCP connections open now.", value=stream.limits.open
        )
        yield CounterMetricFamily(
            "caps_tcp_connections_accepted", "TCP connections accepted.", value=stream.accepted
        )
        refused = CounterMetricFamily(
            "caps_tcp_connections_refused", "TCP connections refused, by limit.", labels=["reason"]
        )
        for reason in (MAX_CONNECTIONS, MAX_PER_PEER):
            refused.add_metric([reason], stream.refused.get(reason, 0))
        yield refused
        yield CounterMetricFamily(
            "caps_tcp_idle_timeouts",
            "TCP connections closed because the client sent nothing for --idle-timeout.",
            value=stream.idle_timeouts,
        )
        yield CounterMetricFamily(
            "caps_tcp_backpressure_pauses",
            "Times a TCP client was not read from because it was not reading its replies.",
            value=stream.pauses,
        )
        received = CounterMetricFamily(
            "caps_bytes_received", "Bytes received from clients.", labels=["transport"]
        )
        received.add_metric(["tcp"], stream.bytes_received)
        received.add_metric(["udp"], udp("bytes_received"))
        yield received
        sent = CounterMetricFamily(
            "caps_bytes_sent", "Bytes of replies sent to clients.", labels=["transport"]
        )
        sent.add_metric(["tcp"], stream.bytes_sent)
        sent.add_metric(["udp"], udp("bytes_sent"))
        yield sent
        yield CounterMetricFamily(
            "caps_udp_datagrams_received", "UDP datagrams received.", value=udp("received")
        )
        datagrams = CounterMetricFamily(
            "caps_udp_datagrams",
            "UDP datagrams by what became of them: answered, or dropped and why.",
            labels=["result"],
        )
        for result, counter in DATAGRAM_RESULTS.items():
            datagrams.add_metric([result], udp(counter))
        yield datagrams


class _QuietSite(Site):
    """A site that writes no access log line per scrape."""

    noisy = False

    def log(self, request: Request) -> None:
        pass


def metrics_site(
    stream: CapsStreamFactory, datagrams: Callable[[], Iterable[CapsDatagramProtocol]]
) -> Site:
    """An HTTP site serving the service's metrics and process metrics at /metrics."""
    registry = CollectorRegistry()
    registry.register(CapsCollector(stream, datagrams))
    ProcessCollector(registry=registry)
    root = Resource()
    resource: Any = MetricsResource(registry)
    root.putChild(b"metrics", resource)
    return _QuietSite(root)

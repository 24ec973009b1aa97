"""Tests for L{twisted_caps.serving.endpoint_strings}: endpoint strings checked before listening."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.endpoints import _parse  # the syntax being mirrored
from twisted.trial.unittest import SynchronousTestCase

from tests.certificates import make_server_files
from twisted_caps.serving.endpoint_strings import (
    EndpointString,
    check,
    requested_port,
    with_default_backlog,
    with_port,
)


class SplitTests(SynchronousTestCase):
    def test_positional_keyword_and_escaped(self) -> None:
        parts = EndpointString.split("tcp6:1200:interface=\\:\\:1:backlog=5")
        self.assertEqual(
            parts, EndpointString("tcp6", ("1200",), (("interface", "::1"), ("backlog", "5")))
        )

    @given(st.text(max_size=40).filter(lambda t: not t.endswith("\\") or t.endswith("\\\\")))
    def test_split_agrees_with_twisted(self, description: str) -> None:
        """The split is Twisted's own: same type, arguments and keywords."""
        try:
            twisted_args, twisted_kwargs = _parse(description)
        except (StopIteration, RuntimeError, UnicodeEncodeError):
            return  # Twisted's own failures: a lone backslash, a non-ASCII keyword
        if not twisted_args:
            self.assertRaises(ValueError, EndpointString.split, description)
            return
        parts = EndpointString.split(description)
        self.assertEqual([parts.kind, *parts.args], twisted_args)
        self.assertEqual(dict(parts.kwargs), twisted_kwargs)

    @given(st.lists(st.text(max_size=10), max_size=3), st.integers(0, 65535))
    def test_with_port_round_trips_every_argument(self, others: list[str], port: int) -> None:
        values = dict(zip(("interface", "backlog"), others, strict=False))
        description = EndpointString("tcp", ("0",), tuple(values.items())).join()
        moved = EndpointString.split(with_port(description, port))
        self.assertEqual(dict(moved.kwargs), {"port": str(port), **values})

    def test_lone_backslash_is_refused(self) -> None:
        self.assertRaises(ValueError, EndpointString.split, "tcp:1200\\")


class PortTests(SynchronousTestCase):
    def test_requested_port(self) -> None:
        for description, port in (
            ("tcp:0", 0),
            ("tcp:port=1201:interface=127.0.0.1", 1201),
            ("haproxy:tcp6:0", 0),
            ("ssl:443:privateKey=k.pem", 443),
            ("unix:/tmp/s", None),
            ("systemd:domain=INET:index=0", None),
            ("tcp:99999", None),
        ):
            self.assertEqual(requested_port(description), port, description)

    def test_with_port_behind_haproxy(self) -> None:
        self.assertEqual(with_port("haproxy:tcp:0", 4000), "haproxy:tcp:port=4000")

    def test_default_backlog_only_where_none_is_named(self) -> None:
        self.assertEqual(with_default_backlog("unix:/tmp/s", 9), "unix:/tmp/s:backlog=9")
        self.assertEqual(with_default_backlog("tcp:1:backlog=2", 9), "tcp:1:backlog=2")
        self.assertEqual(with_default_backlog("systemd:domain=INET", 9), "systemd:domain=INET")


class CheckTests(SynchronousTestCase):
    def assertRefused(self, description: str, fragment: str) -> None:
        error = self.assertRaises(ValueError, check, description)
        self.assertIn(fragment, str(error))

    def test_numbers_interfaces_and_parameters(self) -> None:
        self.assertRefused("tcp:99999", "'99999' is not a port number")
        self.assertRefused("tcp:\u00b2", "not a port number")
        self.assertRefused("tcp", "needs a port")
        self.assertRefused("tcp:1:2:3:4", "too many arguments")
        self.assertRefused("tcp:1:colour=red", "no parameter 'colour'")
        self.assertRefused("tcp:1:port=2", "port given twice")
        self.assertRefused("tcp:1:backlog=99999", "not a backlog")
        self.assertRefused("tcp:1:interface=localhost", "not an IP address")
        self.assertRefused("systemd:domain=INET:index=x", "not a socket index")
        self.assertRefused("systemd:domain=IPX", "domain= must be")
        self.assertRefused("unix:/tmp/s:mode=999", "not an octal file mode")
        self.assertRefused("unix:/tmp/s:lockfile=2", "is not 0 or 1")
        self.assertRefused("unix:", "needs a socket path")

    def test_tls_files_are_named(self) -> None:
        files = make_server_files(self.mktemp())
        check(f"ssl:0:privateKey={files.key}:certKey={files.certificate}")
        self.assertRefused(
            f"ssl:0:privateKey={files.key}:certKey={files.ca}", "does not match certKey"
        )
        self.assertRefused(f"ssl:0:privateKey={files.certificate}", "not a PEM private key")
        self.assertRefused(f"ssl:0:privateKey={files.key}", "not a PEM certificate")
        self.assertRefused("ssl:0:privateKey=/nonexistent.pem", "No such file or directory")

"""Tests for L{twisted_caps.operating.tap}: the command line of C{twistd caps}."""

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint
from twisted.trial.unittest import SynchronousTestCase

from tests.servers import assert_one_line_usage_error
from twisted_caps.core.loop_guard import LOOP_STREAK, LOOP_WINDOW
from twisted_caps.operating.tap import Options, makeService
from twisted_caps.serving.config import UdpListener
from twisted_caps.serving.datagram import MAX_UDP_PAYLOAD
from twisted_caps.serving.endpoint_strings import with_default_backlog
from twisted_caps.serving.listeners import stream_endpoint
from twisted_caps.serving.service import CapsService


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    def assertUsageError(self, argv: list[str], *fragments: str) -> None:
        assert_one_line_usage_error(self, argv, "caps: ", *fragments)

    def test_defaults_serve_tcp_and_udp_on_1200_on_every_ipv4_address(self) -> None:
        config = parse().config
        [tcp] = config.tcp
        self.assertEqual(tcp.description, "tcp:1200:interface=0.0.0.0:backlog=1024")
        self.assertIsInstance(stream_endpoint(tcp, reactor), TCP4ServerEndpoint)
        self.assertEqual(config.udp, (UdpListener("", 1200),))
        self.assertFalse(config.once)

    def test_port_and_interface_apply_to_both(self) -> None:
        config = parse("-p", "4000", "-i", "127.0.0.1").config
        self.assertEqual(config.tcp[0].description, "tcp:4000:interface=127.0.0.1:backlog=1024")
        self.assertEqual(config.udp, (UdpListener("127.0.0.1", 4000),))

    def test_ipv6_interface_uses_a_tcp6_endpoint(self) -> None:
        config = parse("--interface", "::").config
        self.assertIsInstance(stream_endpoint(config.tcp[0], reactor), TCP6ServerEndpoint)
        self.assertEqual(str(config.udp[0]), "[::]:1200")

    def test_tcp_endpoints_replace_the_default_and_repeat(self) -> None:
        config = parse("--tcp", "tcp:5000", "--tcp", "unix:/tmp/caps.sock").config
        self.assertEqual(
            [t.description for t in config.tcp],
            ["tcp:5000:backlog=1024", "unix:/tmp/caps.sock:backlog=1024"],
        )
        self.assertIsInstance(stream_endpoint(config.tcp[1], reactor), UNIXServerEndpoint)

    def test_udp_addresses(self) -> None:
        config = parse("--udp", "5000", "--udp", "127.0.0.1:5001", "--udp", "[::1]:5002").config
        self.assertEqual(
            config.udp,
            (UdpListener("", 5000), UdpListener("127.0.0.1", 5001), UdpListener("::1", 5002)),
        )

    def test_no_tcp_and_no_udp(self) -> None:
        self.assertEqual(parse("--no-tcp").config.tcp, ())
        self.assertEqual(parse("--no-udp").config.udp, ())

    def test_limit_defaults_protect_without_surprising_a_classroom(self) -> None:
        config = parse().config
        self.assertEqual(
            (config.max_connections, config.max_per_peer, config.idle_timeout, config.udp_rate),
            (20000, 1000, 300.0, 5000),
        )
        self.assertEqual(config.shutdown_timeout, 5.0)

    def test_limits_can_be_set_and_switched_off(self) -> None:
        config = parse(
            "--max-connections",
            "0",
            "--max-per-peer",
            "2",
            "--idle-timeout",
            "1.5",
            "--udp-rate",
            "0",
            "--shutdown-timeout",
            "0",
        ).config
        self.assertEqual(
            (config.max_connections, config.max_per_peer, config.idle_timeout, config.udp_rate),
            (0, 2, 1.5, 0),
        )

    def test_bad_limits_are_one_line(self) -> None:
        for option in ("--max-connections", "--max-per-peer", "--udp-rate"):
            self.assertUsageError([option, "-1"], option, "not a whole number")
        for option in ("--idle-timeout", "--shutdown-timeout"):
            for value in ("-1", "soon", "inf", "nan"):
                self.assertUsageError([option, value], option, "not a number of seconds")

    def test_once(self) -> None:
        self.assertTrue(parse("--once").config.once)

    def test_bad_port_is_one_line(self) -> None:
        for port in ("abc", "-1", "65536", ""):
            self.assertUsageError(["--port", port], "--port", "not a port number")

    def test_bad_interface_is_one_line(self) -> None:
        self.assertUsageError(["-i", "example.com"], "--interface", "not an IP address")

    def test_unknown_endpoint_type_is_one_line(self) -> None:
        self.assertUsageError(["--tcp", "bogus:1200"], "--tcp bogus:1200", "Unknown endpoint type")

    def test_missing_systemd_socket_is_one_line(self) -> None:
        self.assertUsageError(["--tcp", "systemd:domain=INET:index=0"], "no such inherited socket")

    def test_unreadable_certificate_is_one_line(self) -> None:
        self.assertUsageError(
            ["--tcp", "ssl:4430:privateKey=/nonexistent/key.pem"], "/nonexistent/key.pem"
        )

    def test_bad_udp_address_is_one_line(self) -> None:
        for address in ("host.example:1200", "::1:1200", "1.2.3.4:x"):
            self.assertUsageError(["--udp", address], f"--udp {address}")

    def test_nothing_to_serve_is_refused(self) -> None:
        self.assertUsageError(["--no-tcp", "--no-udp"], "nothing to serve")

    def test_unknown_option_is_one_line(self) -> None:
        self.assertUsageError(["--bogus"], "--bogus")

    def test_every_listener_gets_the_daemons_backlog_unless_it_names_one(self) -> None:
        """--tcp tcp:1200 queues 1024 pending connections like the default listener, not 50."""
        config = parse("--tcp", "haproxy:tcp:1200", "--tcp", "tcp6:1201:backlog=64").config
        self.assertEqual(
            [t.description for t in config.tcp],
            ["haproxy:tcp:1200:backlog=1024", "tcp6:1201:backlog=64"],
        )
        for description in ("systemd:domain=INET:index=0",):
            self.assertEqual(with_default_backlog(description, 1024), description)

    def test_unicode_and_huge_numbers_are_one_line(self) -> None:
        """Issue 12 item 7: superscripts and 5,000 digits are usage errors, not tracebacks."""
        for option in ("--port", "--workers", "--max-connections", "--udp-rate", "--idle-timeout"):
            for value in ("²", "¹⁰", "9" * 5000, " 1", "1_0", "-0", "1e400"):
                self.assertUsageError([option, value], option)

    def test_workers_are_bounded(self) -> None:
        """--workers 100000 would fork that many processes: 256 is the most."""
        self.assertEqual(parse("--workers", "256").config.workers, 256)
        self.assertUsageError(["--workers", "257"], "--workers", "(1-256)")
        self.assertUsageError(["--workers", "100000"], "--workers", "(1-256)")

    def test_endpoint_ports_are_checked_before_listening(self) -> None:
        """A bad port in --tcp or --metrics is refused while parsing, before any listener opens."""
        for option in ("--tcp", "--metrics"):
            for description in ("tcp:99999", "tcp6:-1", "ssl:1_2", "haproxy:tcp:65536"):
                self.assertUsageError([option, description], f"{option} {description}", "port")
        self.assertUsageError(["--tcp", "tcp:1200:backlog=0"], "backlog")
        self.assertUsageError(["--tcp", "tcp:1200:interface=example.com"], "not an IP address")
        self.assertUsageError(["--tcp", "unix:/nonexistent/caps.sock"], "no such directory")
        self.assertUsageError(["--tcp", "unix:/tmp/" + "s" * 200], "bytes long")
        self.assertUsageError(["--tcp", "tcp:1200\\"], "lone backslash")

    def test_error_quoting_control_characters_stays_one_line(self) -> None:
        """A newline or an escape sequence in a value is shown escaped."""
        self.assertUsageError(["--tcp", "bogus\n\x1b[2J:1"], "bogus\\n\\x1b")
        self.assertUsageError(["-i", "1.2.3.4\n"], "--interface")

    def test_help_documents_defaults_and_examples(self) -> None:
        text = str(Options())
        for fragment in (
            "--port",
            "1200",
            "--tcp",
            "--udp",
            "--once",
            "haproxy:tcp:1200",
            "Examples",
        ):
            self.assertIn(fragment, text)

    def test_help_states_the_udp_limits_the_service_applies(self) -> None:
        """The manual's numbers for UDP sizes and loop protection are the code's."""
        text = " ".join(str(Options()).split())
        self.assertIn(f"{MAX_UDP_PAYLOAD:,} bytes", text)
        self.assertIn(f"more than {LOOP_STREAK} times in a row, each within {LOOP_WINDOW:g}s", text)


class HelpTests(SynchronousTestCase):
    def test_help_keeps_paragraphs_and_example_lines(self) -> None:
        """The description is wrapped by paragraph; each example keeps its own line."""
        text = Options().getUsage(width=80)
        description = text.split("\n\n", 1)[1]
        prose = [line for line in description.splitlines() if not line.startswith("  twistd")]
        self.assertEqual([line for line in prose if "  " in line], [])
        self.assertIn("\n\nTCP answers every byte", description)
        self.assertIn("\n\nExamples:\n  twistd -n caps                        TCP", text)
        self.assertIn("\n  twistd -n caps --workers 4            four processes", text)
        self.assertTrue(all(len(line) <= 80 for line in text.splitlines()), text)

    def test_interface_shows_no_empty_default(self) -> None:
        """-i shows no '[default: ]' in the help."""
        self.assertNotIn("[default: ]", str(Options()))

    def test_version_is_the_project_version(self) -> None:
        """--version exits 0 (the printed text is checked through twistd)."""
        error = self.assertRaises(SystemExit, parse, "--version")
        self.assertEqual(error.code, 0)


class MakeServiceTests(SynchronousTestCase):
    def test_service_carries_the_parsed_config(self) -> None:
        options = parse("--once")
        service = makeService(options).serving
        self.assertIsInstance(service, CapsService)
        assert isinstance(service, CapsService)
        self.assertIs(service.config, options.config)

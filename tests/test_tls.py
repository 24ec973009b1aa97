"""
TLS: the server behind an C{ssl:} endpoint, and the client's C{--tls}
verification of the certificate and the host name.
"""

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.certificates import ServerFiles, make_server_files, ssl_endpoint
from tests.servers import caps_client, port_of, start_in_reactor, start_process, twistd
from twisted_caps.client import TLSVerificationError, capitalize_over_tcp, tls_client_options


class LibraryTests(TestCase):
    def serve(self, files: ServerFiles) -> int:
        return port_of(start_in_reactor(self, "--tcp", ssl_endpoint(files), "--no-udp"), "TCP")

    async def test_round_trip_by_name_and_by_address(self) -> None:
        files = make_server_files(self.mktemp())
        port = self.serve(files)
        for host in ("localhost", "127.0.0.1"):
            tls = tls_client_options(host, files.ca)
            reply = await capitalize_over_tcp(reactor, host, port, "straße\n".encode(), tls=tls)
            self.assertEqual(reply, b"STRASSE\n")

    async def test_large_input_comes_back_whole_after_close_notify(self) -> None:
        files = make_server_files(self.mktemp())
        port = self.serve(files)
        data = "grüße aus köln\n".encode() * 50_000
        tls = tls_client_options("localhost", files.ca)
        reply = await capitalize_over_tcp(reactor, "localhost", port, data, timeout=30, tls=tls)
        self.assertEqual(reply, "GRÜSSE AUS KÖLN\n".encode() * 50_000)

    async def test_empty_input_gets_empty_reply(self) -> None:
        files = make_server_files(self.mktemp())
        port = self.serve(files)
        tls = tls_client_options("localhost", files.ca)
        self.assertEqual(await capitalize_over_tcp(reactor, "localhost", port, b"", tls=tls), b"")

    async def test_certificate_for_another_host_is_refused(self) -> None:
        files = make_server_files(self.mktemp(), names=("caps.example",))
        port = self.serve(files)
        tls = tls_client_options("localhost", files.ca)
        with self.assertRaises(TLSVerificationError) as raised:
            await capitalize_over_tcp(reactor, "localhost", port, b"x", tls=tls)
        self.assertEqual(
            str(raised.exception),
            "TLS certificate is not valid for localhost: it names caps.example",
        )

    async def test_certificate_from_an_untrusted_ca_is_refused(self) -> None:
        files = make_server_files(self.mktemp())
        other = make_server_files(self.mktemp())
        port = self.serve(files)
        tls = tls_client_options("localhost", other.ca)
        with self.assertRaises(TLSVerificationError) as raised:
            await capitalize_over_tcp(reactor, "localhost", port, b"x", tls=tls)
        self.assertIn("certificate verify failed", str(raised.exception))

    async def test_close_notify_ends_input_like_a_half_close(self) -> None:
        # An unfinished UTF-8 character is held back until the end of input,
        # then sent unchanged: that needs close_notify as readConnectionLost.
        files = make_server_files(self.mktemp())
        port = self.serve(files)
        tls = tls_client_options("localhost", files.ca)
        reply = await capitalize_over_tcp(reactor, "localhost", port, b"caf\xc3", tls=tls)
        self.assertEqual(reply, b"CAF\xc3")


class CommandTests(TestCase):
    """caps-client --tls against the installed plugin under twistd."""

    def serve(self, files: ServerFiles) -> int:
        daemon = start_process(self, twistd("--tcp", ssl_endpoint(files), "--no-udp"), ("TCP",))
        assert daemon.tcp_port is not None
        return daemon.tcp_port

    def test_verified_round_trip(self) -> None:
        files = make_server_files(self.mktemp())
        port = str(self.serve(files))
        done = caps_client("--tls", "--ca", files.ca, "-p", port, "hello", "world")
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, b"HELLO WORLD\n", b""))

    def test_wrong_host_name_is_one_line_and_status_1(self) -> None:
        files = make_server_files(self.mktemp(), names=("caps.example",))
        port = str(self.serve(files))
        done = caps_client("--tls", "--ca", files.ca, "--host", "127.0.0.1", "-p", port, "x")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stdout, b"")
        self.assertEqual(
            done.stderr.splitlines(),
            [
                f"caps-client: 127.0.0.1:{port}: TLS certificate is not valid for 127.0.0.1:"
                " it names caps.example".encode()
            ],
        )

    def test_untrusted_certificate_is_one_line_and_status_1(self) -> None:
        files = make_server_files(self.mktemp())
        other = make_server_files(self.mktemp())
        port = str(self.serve(files))
        for trust in (["--ca", other.ca], []):  # another CA, then the system's
            done = caps_client("--tls", *trust, "-p", port, "x")
            self.assertEqual(done.returncode, 1)
            self.assertEqual(
                done.stderr.splitlines(),
                [
                    f"caps-client: localhost:{port}: TLS handshake failed: "
                    "certificate verify failed".encode()
                ],
            )

    def test_ca_file_that_is_missing_is_one_line(self) -> None:
        done = caps_client("--tls", "--ca", "/nonexistent/ca.pem", "x")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            done.stderr.splitlines(),
            [b"caps-client: --ca: No such file or directory: /nonexistent/ca.pem"],
        )

    def test_tls_with_udp_is_a_usage_error(self) -> None:
        done = caps_client("--tls", "--udp", "x")
        self.assertEqual(done.returncode, 1)
        self.assertIn(b"--tls works over TCP only", done.stderr)

    def test_ca_file_that_is_not_pem_is_one_line(self) -> None:
        path = self.mktemp()
        with open(path, "w") as file:
            file.write("not a certificate\n")
        done = caps_client("--tls", "--ca", path, "x")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            done.stderr.splitlines(), [f"caps-client: --ca {path}: not a PEM certificate".encode()]
        )

# -*- test-case-name: tests.test_endpoint_strings,tests.test_tap -*-
"""
Server endpoint strings (C{tcp:1200}, C{unix:/run/caps.sock}, C{ssl:...},
C{haproxy:tcp:1200}, C{systemd:...}) checked before anything listens.

Twisted parses an endpoint string when it builds the endpoint, but leaves
most values to the moment of listening: C{tcp:99999} is an C{OverflowError}
from C{bind}, after the listeners before it have opened; C{tcp:1_2} is port
12; a certificate that is not PEM is a list of OpenSSL tuples. L{check}
finds these at option time and says what is wrong in one line.

The syntax is Twisted's (see C{twisted.internet.endpoints.serverFromString}):
arguments separated by C{:}, C{name=value} for keyword arguments, C{\\}
escaping the next character.
"""

import os
from dataclasses import dataclass

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.python import usage

from twisted_caps.core.option_values import port_number, quoted, whole_number
from twisted_caps.core.pem_files import read_pem_file

#: A UNIX socket path longer than this does not fit in C{sockaddr_un}.
MAX_UNIX_PATH_BYTES = 107
#: The backlog C{listen(2)} can be given (the kernel caps it at somaxconn).
MAX_BACKLOG = 65535
#: The endpoint types that listen on an IP port, and their parameter names.
IP_TYPES = {
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "interface", "backlog"),
    "ssl": (
        "port",
        "privateKey",
        "certKey",
        "sslmethod",
        "interface",
        "backlog",
        "extraCertChain",
        "dhParameters",
    ),
}
UNIX_PARAMETERS = ("address", "mode", "backlog", "lockfile")


@dataclass(frozen=True)
class EndpointString:
    """An endpoint string split into its type, positional and keyword arguments."""

    kind: str
    args: tuple[str, ...]
    kwargs: tuple[tuple[str, str], ...]

    @classmethod
    def split(cls, description: str) -> "EndpointString":
        """
        Split C{description} as Twisted does.

        @raise ValueError: if it ends in a lone backslash or names no type.
        """
        fields: list[list[str]] = [[""]]
        characters = iter(description)
        for character in characters:
            if character == "\\":
                escaped = next(characters, None)
                if escaped is None:
                    raise ValueError("ends in a lone backslash")
                fields[-1][-1] += escaped
            elif character == ":":
                fields.append([""])
            elif character == "=" and len(fields[-1]) == 1:
                fields[-1].append("")
            else:
                fields[-1][-1] += character
        positional = [field[0] for field in fields if len(field) == 1]
        if not positional:
            raise ValueError("names no endpoint type (such as tcp:PORT or unix:PATH)")
        kwargs = tuple((field[0], field[1]) for field in fields if len(field) == 2)
        return cls(positional[0], tuple(positional[1:]), kwargs)

    def parameters(self, names: tuple[str, ...]) -> dict[str, str]:
        """
        The arguments by name, positional ones taking C{names} in order.

        @raise ValueError: for too many positional arguments, an unknown
            name or a name given twice.
        """
        if len(self.args) > len(names):
            raise ValueError(f"too many arguments for {self.kind}: (at most {len(names)})")
        values = dict(zip(names, self.args, strict=False))
        for name, value in self.kwargs:
            if name not in names:
                raise ValueError(f"{self.kind}: has no parameter {name!r}")
            if name in values:
                raise ValueError(f"{self.kind}: {name} given twice")
            values[name] = value
        return values

    def join(self) -> str:
        """The endpoint string again, with every argument quoted."""
        words = [self.kind, *map(_quote, self.args)]
        words += [f"{_quote(name)}={_quote(value)}" for name, value in self.kwargs]
        return ":".join(words)


def _quote(argument: str) -> str:
    """Escape what Twisted's endpoint syntax would otherwise read as syntax."""
    for special in ("\\", ":", "="):
        argument = argument.replace(special, "\\" + special)
    return argument


def requested_port(description: str) -> int | None:
    """
    The IP port a C{tcp:}, C{tcp6:} or C{ssl:} listener (also behind
    C{haproxy:}) asks for, or None for other endpoints or a bad string.
    """
    try:
        parts = EndpointString.split(description)
        if parts.kind == "haproxy":
            return requested_port(description.partition(":")[2])
        if parts.kind not in IP_TYPES:
            return None
        port = parts.parameters(IP_TYPES[parts.kind]).get("port")
        return None if port is None else port_number(port, "port")
    except (ValueError, usage.UsageError):
        return None


def with_port(description: str, port: int) -> str:
    """C{description} (a C{tcp:}, C{tcp6:}, C{ssl:} or C{haproxy:} one) listening on C{port}."""
    kind, _, rest = description.partition(":")
    if kind == "haproxy":
        return f"haproxy:{with_port(rest, port)}"
    parts = EndpointString.split(description)
    values = parts.parameters(IP_TYPES[parts.kind])
    values["port"] = str(port)
    return EndpointString(parts.kind, (), tuple(values.items())).join()


def with_default_backlog(description: str, backlog: int) -> str:
    """
    C{description} with C{backlog=BACKLOG} added when it listens itself
    (C{tcp:}, C{tcp6:}, C{ssl:}, C{unix:}, also behind C{haproxy:}) and
    names no backlog: Twisted's default of 50 is the daemon's default for
    no listener. C{description} must have passed L{check}.
    """
    inner = description.removeprefix("haproxy:")
    parts = EndpointString.split(inner)
    listens = parts.kind in IP_TYPES or parts.kind == "unix"
    if not listens or any(name == "backlog" for name, _ in parts.kwargs):
        return description
    return f"{description}:backlog={backlog}"


def check(description: str) -> None:
    """
    Check the values of a server endpoint string that Twisted would only
    check when listening, or check with an unreadable message.

    @raise ValueError: with one line saying what is wrong.
    """
    parts = EndpointString.split(description)
    try:
        if parts.kind == "haproxy":
            check(description.partition(":")[2])
        elif parts.kind in IP_TYPES:
            values = parts.parameters(IP_TYPES[parts.kind])
            _check_ip(parts.kind, values)
            if parts.kind == "ssl":
                _check_tls(values)
        elif parts.kind == "unix":
            _check_unix(parts.parameters(UNIX_PARAMETERS))
        elif parts.kind == "systemd":
            _check_systemd(parts.parameters(("domain", "index", "name")))
    except usage.UsageError as error:
        raise ValueError(str(error)) from None


def _check_backlog(values: dict[str, str]) -> None:
    if "backlog" in values:
        whole_number(values["backlog"], "backlog", 1, MAX_BACKLOG, "a backlog (1-65535)")


def _check_ip(kind: str, values: dict[str, str]) -> None:
    if "port" not in values:
        raise ValueError(f"{kind}: needs a port")
    port_number(values["port"], "port")
    interface = values.get("interface", "")
    if interface and not (isIPAddress(interface) or isIPv6Address(interface)):
        raise ValueError(f"interface: {quoted(interface)} is not an IP address")
    _check_backlog(values)


def _check_unix(values: dict[str, str]) -> None:
    path = values.get("address", "")
    if not path:
        raise ValueError("unix: needs a socket path")
    encoded = os.fsencode(path)
    if len(encoded) > MAX_UNIX_PATH_BYTES:
        raise ValueError(
            f"unix: the path is {len(encoded)} bytes long (at most {MAX_UNIX_PATH_BYTES})"
        )
    if b"\0" in encoded:
        raise ValueError("unix: the path contains a NUL character")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise ValueError(f"unix: no such directory: {folder}")
    mode = values.get("mode", "666")
    if not (1 <= len(mode) <= 4 and set(mode) <= set("01234567")):
        raise ValueError(f"mode: {quoted(mode)} is not an octal file mode (such as 660)")
    if values.get("lockfile", "1") not in ("0", "1"):
        raise ValueError(f"lockfile: {quoted(values['lockfile'])} is not 0 or 1")
    _check_backlog(values)


def _check_systemd(values: dict[str, str]) -> None:
    if values.get("domain") not in ("INET", "INET6", "UNIX"):
        raise ValueError("systemd: domain= must be INET, INET6 or UNIX")
    if "index" in values:
        whole_number(values["index"], "index", 0, 1023, "a socket index (0-1023)")


def _check_tls(values: dict[str, str]) -> None:
    """Name the file that is unreadable or not PEM, or the key that does not match."""
    try:
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from OpenSSL import SSL
    except ImportError:
        raise ValueError("TLS needs pyOpenSSL: pip install 'twisted-caps[tls]'") from None
    method = values.get("sslmethod")
    if method is not None and not (method.endswith("_METHOD") and hasattr(SSL, method)):
        raise ValueError(f"sslmethod: {quoted(method)} is not an OpenSSL method (TLS_METHOD)")
    key_path = values.get("privateKey", "server.pem")
    cert_path = values.get("certKey", key_path)
    key_pem, cert_pem = read_pem_file(key_path, "privateKey"), read_pem_file(cert_path, "certKey")
    for extra in ("extraCertChain", "dhParameters"):
        if extra in values:
            read_pem_file(values[extra], extra)
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ValueError(f"certKey {cert_path}: not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        message = f"privateKey {key_path}: encrypted (give it without a passphrase)"
        raise ValueError(message) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"privateKey {key_path}: not a PEM private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != certificate.public_key().public_bytes(
        encoding, public
    ):
        raise ValueError(f"privateKey {key_path} does not match certKey {cert_path}")

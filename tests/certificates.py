"""Throwaway TLS certificate authorities and server certificates for tests."""

import datetime
import ipaddress
import os
import subprocess
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The names a loopback test server's certificate is valid for.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServerFiles:
    """PEM files for one server: its CA's certificate, its certificate and key."""

    ca: str
    certificate: str
    key: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as file:
        file.write(data)
    return path


def make_server_files(directory: str, names: tuple[str, ...] = LOOPBACK_NAMES) -> ServerFiles:
    """
    Create, in C{directory}, a new CA and a server certificate it signs for
    C{names} (DNS names and IP addresses), valid for a day.
    """
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("twisted-caps test CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alternative_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative_names.append(x509.DNSName(name))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    return ServerFiles(
        ca=_write(os.path.join(directory, "ca.pem"), ca.public_bytes(pem)),
        certificate=_write(os.path.join(directory, "server.pem"), certificate.public_bytes(pem)),
        key=_write(
            os.path.join(directory, "server.key"),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ),
    )


def ssl_endpoint(files: ServerFiles) -> str:
    """The C{--tcp} endpoint string of a loopback TLS listener on a free port."""
    return f"ssl:0:interface=127.0.0.1:privateKey={files.key}:certKey={files.certificate}"


def openssl_self_signed(
    directory: str, openssl: str, common_name: str, alternative_names: tuple[str, ...] = ()
) -> ServerFiles:
    """
    A certificate made the quick way operators make one, with the C{openssl}
    command line: self-signed (so it is its own CA), with subject
    CN=C{common_name} and, only when C{alternative_names} are given, a
    subjectAltName of them (C{DNS:name} or C{IP:address}).
    """
    os.makedirs(directory, exist_ok=True)
    key, certificate = os.path.join(directory, "k.pem"), os.path.join(directory, "c.pem")
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    command += ["-subj", f"/CN={common_name}", "-keyout", key, "-out", certificate]
    if alternative_names:
        command += ["-addext", "subjectAltName=" + ",".join(alternative_names)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return ServerFiles(ca=certificate, certificate=certificate, key=key)

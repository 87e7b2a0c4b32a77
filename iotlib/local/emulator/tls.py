"""A local certificate authority and server certificate, so clients can reach the emulator over TLS.

Azure Event Hubs speaks AMQP over TLS on port 5671 (and WebSockets over TLS on
443); a client built from a host name and a credential always uses TLS. The
emulator can too: :func:`ensure_certificates` creates, once, under a folder of
the local stack (``.iotlib/tls`` for ``iotlib up``)::

    ca.pem           the local CA's certificate: what clients trust
    ca-key.pem       its private key (kept, so a new server certificate keeps the same CA)
    server.pem       the emulator's certificate, signed by the CA, for localhost, 127.0.0.1 and ::1
    server-key.pem   its private key

and reuses them on later starts while they are valid and name every host
asked for. A client trusts the CA with ``connection_verify=".iotlib/tls/ca.pem"``
(azure-eventhub's option for a CA bundle); nothing is installed system-wide.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_NAME = "iotlib local Event Hubs emulator CA"
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity clients such as macOS accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    """Where the local CA and the emulator's certificate are."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server-key.pem"

    def server_context(self) -> ssl.SSLContext:
        """The TLS context the emulator listens with."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context


def ensure_certificates(folder: str | Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> TlsFiles:
    """The CA and a server certificate for ``hosts`` under ``folder``: reused if still good, else made."""
    files = TlsFiles(Path(folder))
    wanted = _names(hosts)
    now = dt.datetime.now(dt.UTC)
    files.folder.mkdir(parents=True, exist_ok=True)
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert = _load_cert(files.ca)
    key = _load_key(files.ca_key)
    if ca_cert is not None and isinstance(key, ec.EllipticCurvePrivateKey) and _valid(ca_cert, now):
        ca_key = key
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(files.ca_key, _private_pem(ca_key), secret=True)
        _write(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
        _remove(files.cert)  # signed by a CA that is gone

    server_cert = _load_cert(files.cert)
    if (
        server_cert is not None
        and _load_key(files.key) is not None
        and _valid(server_cert, now)
        and server_cert.issuer == ca_cert.subject
        and wanted <= _san(server_cert)
    ):
        return files
    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in sorted(wanted):
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.key, _private_pem(server_key), secret=True)
    _write(files.cert, server_cert.public_bytes(serialization.Encoding.PEM))
    return files


def _names(hosts: Sequence[str]) -> set[str]:
    names = set(DEFAULT_HOSTS)
    for host in hosts:
        host = host.strip().strip("[]")
        if host and host not in ("0.0.0.0", "::"):  # a wildcard listen address names no host
            names.add(host)
    return names


def _san(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


def _valid(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _load_key(path: Path) -> object | None:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass

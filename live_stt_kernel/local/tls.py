"""TLS for the local servers, so that ``wss://``-only clients (the official Node SDK) and ``https://``-only calls
(the Python SDK's temporary token) reach them.

`self_signed` makes a certificate for this machine (``localhost``, ``127.0.0.1``, ``::1`` and the host name) once,
into the cache folder, and makes it again when it is about to expire. A client trusts it by pointing at the
certificate file: ``NODE_EXTRA_CA_CERTS=cert.pem`` for Node, ``SSL_CERT_FILE=cert.pem`` for Python (the standard
library, httpx, websockets and websocket-client all read it). The private key is written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from ..errors import ConfigurationError
from .models import cache_dir

VALID_DAYS = 825  # the longest lifetime Apple's TLS clients accept for a server certificate
RENEW_BEFORE = datetime.timedelta(days=7)


def _names() -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses the certificate covers: loopback, and this machine's name."""
    dns = sorted({"localhost", socket.gethostname()})
    return dns, ["127.0.0.1", "::1"]


def _still_valid(cert_file: Path) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > RENEW_BEFORE


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)  # a file left there before never keeps a wider mode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _make(cert_file: Path, key_file: Path) -> None:
    # the cryptography package (the [local] extra) builds it: the standard library's ssl module only loads certificates
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "live-stt local server"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "live_stt_kernel (self-signed)")])
    dns, ips = _names()
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([*(x509.DNSName(d) for d in dns),
                                                    *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips)]), critical=False)
        # its own trust anchor: clients are told to trust this file, so it signs itself as a CA would
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, crl_sign=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    partial = cert_file.with_name(f"{cert_file.name}.{os.getpid()}.partial")
    partial.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(partial, cert_file)  # written last and whole: a certificate on disk always has its key beside it


def self_signed(folder: Path | None = None) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` in ``folder`` (default: ``tls/`` in the cache folder), made now if missing or expiring."""
    folder = folder if folder is not None else cache_dir() / "tls"
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    if not (key_file.exists() and _still_valid(cert_file)):
        folder.mkdir(parents=True, exist_ok=True)
        _make(cert_file, key_file)
    return cert_file, key_file


def server_context(cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """A server-side TLS context with this certificate chain and key; a clear error when they cannot be loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot use the TLS certificate {cert_file} with key {key_file}: {exc}") from None
    return context


__all__ = ["self_signed", "server_context"]

"""TLS for the local servers, so that ``wss://``-only clients (the official Node SDK) and ``https://``-only calls
(the Python SDK's temporary token) reach them.

`self_signed` makes a certificate for this machine (``localhost``, ``127.0.0.1``, ``::1`` and the host name) once,
into the cache folder, and makes it again when it is about to expire. A client trusts it by pointing at the
certificate file: ``NODE_EXTRA_CA_CERTS=cert.pem`` for Node, ``SSL_CERT_FILE=cert.pem`` for Python (the standard
library, httpx, websockets and websocket-client all read it). The private key is written with mode 0600.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigurationError
from .models import cache_dir

VALID_DAYS = 825  # the longest lifetime Apple's TLS clients accept for a server certificate
RENEW_BEFORE = datetime.timedelta(days=7)
LOCK_WAIT_S = 30.0  # making a certificate takes milliseconds: a lock held this long belongs to a stuck process


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


def _write_new(path: Path, data: bytes, mode: int) -> Path:
    """``data`` into a fresh file beside ``path`` (created with ``mode``, never through a link left there), to be renamed."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return partial


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
    key_partial = _write_new(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()), 0o600)
    cert_partial = _write_new(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    os.replace(key_partial, key_file)
    os.replace(cert_partial, cert_file)


def _usable(cert_file: Path, key_file: Path) -> bool:
    """Both files there, the certificate not about to expire, and the key the certificate's."""
    if not (key_file.exists() and _still_valid(cert_file)):
        return False
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError):
        return False
    return True


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the folder's lock file: two servers starting at once make one certificate, not two halves of two."""
    with open(folder / ".lock", "w") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigurationError(f"another process holds {folder / '.lock'}: cannot make the TLS certificate") from None
                time.sleep(0.05)
        yield  # closing the file lets go of the lock


def self_signed(folder: Path | None = None) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` in ``folder`` (default: ``tls/`` in the cache folder), made now if missing, expiring,
    or not a pair (a crash between the two writes, an older run)."""
    folder = folder if folder is not None else cache_dir() / "tls"
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        if not _usable(cert_file, key_file):
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

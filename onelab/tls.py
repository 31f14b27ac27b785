"""HTTPS on the public port: the certificate configurable-http-proxy serves, and how OneLab's own
requests trust it.

The rule is ``HubSettings.tls`` (onelab/settings.py): beyond loopback the public port speaks only
TLS. With ``hub.tls_cert``/``hub.tls_key`` the operator's certificate is served as it is. Without
them OneLab keeps a local CA in ``<state_dir>/tls/`` (made once; its key mode 0600) and signs a
server certificate for this machine's names: its hostname, its non-loopback interface addresses
(read from the interfaces, nothing is contacted), ``localhost``, 127.0.0.1, hub.ip and
hub.tls_hostnames. :func:`ensure` renews that certificate when it nears expiry or its names
change; learners' browsers trust the CA once (``onelab tls show`` says where it is).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import json
import os
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import DNS_NAME, WILDCARD_HOSTS, Settings

CA_DAYS = 3650
SERVER_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
"""A server certificate with less left than this is made afresh at the next start."""
SKIP_INTERFACES = ("br-", "docker", "veth", "virbr")
"""Docker's (and libvirt's) bridges: no learner's browser comes in through them, and they come
and go with networks, which would renew the certificate for nothing."""
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Files:
    """What the proxy serves: its certificate and key, and the CA to hand to browsers (None
    when the certificate is the operator's)."""

    cert: Path
    key: Path
    ca: Path | None


@dataclass(frozen=True)
class Names:
    dns: tuple[str, ...]
    ips: tuple[str, ...]

    def all(self) -> list[str]:
        return [*self.dns, *self.ips]


def tls_dir(settings: Settings) -> Path:
    return settings.state_dir / "tls"


def ca_path(settings: Settings) -> Path:
    """The local CA's certificate: the file to hand to learners' browsers."""
    return tls_dir(settings) / "ca.crt"


def local_files(settings: Settings) -> Files:
    d = tls_dir(settings)
    return Files(cert=d / "server.crt", key=d / "server.key", ca=ca_path(settings))


def _ca_key_path(settings: Settings) -> Path:
    return tls_dir(settings) / "ca.key"


def verify_for(settings: Settings) -> str | bool:
    """What `requests` needs as ``verify=`` to trust the public URL: the local CA's file when
    OneLab made the certificate, else True (the system's trust, or $REQUESTS_CA_BUNDLE for an
    operator's private CA). Before the CA is made nothing is trusted (a request then fails as
    one to a stranger would, not on a missing file)."""
    if settings.hub.tls and settings.hub.tls_cert is None and ca_path(settings).is_file():
        return str(ca_path(settings))
    return True


# -- the machine's names, read locally -------------------------------------------------------

def interface_addresses() -> list[Address]:
    """This machine's addresses beyond loopback, from its interfaces (iproute2's `ip -j addr`,
    else the kernel's SIOCGIFADDR for IPv4): stable ones only, no link-local or temporary
    addresses, none on Docker's bridges. Nothing outside the machine is asked."""
    found: list[tuple[str, str]] = []
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        for link in json.loads(out):
            for a in link.get("addr_info", []):
                if not a.get("temporary") and not a.get("deprecated"):
                    found.append((link.get("ifname", ""), a.get("local", "")))
    except (OSError, subprocess.SubprocessError, ValueError):
        found = list(_ioctl_ipv4())
    addrs: list[Address] = []
    for ifname, text in found:
        if ifname.startswith(SKIP_INTERFACES):
            continue
        try:
            ip = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast) \
                and ip not in addrs:
            addrs.append(ip)
    return addrs


def _ioctl_ipv4() -> Iterator[tuple[str, str]]:
    SIOCGIFADDR = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
            yield name, socket.inet_ntoa(raw[20:24])


def wanted_names(settings: Settings, addresses: list[Address] | None = None) -> Names:
    """The names the generated certificate must carry, in a fixed order."""
    h = settings.hub
    dns: list[str] = []
    ips: list[str] = []

    def add(name: str) -> None:
        name = name.strip().lower()
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            if DNS_NAME.match(name) and name not in dns:
                dns.append(name)
            return
        if not ip.is_unspecified and str(ip) not in ips:
            ips.append(str(ip))

    for name in h.tls_hostnames:
        add(name)
    add(socket.gethostname())
    add("localhost")
    if h.ip not in WILDCARD_HOSTS:
        add(h.ip)
    add("127.0.0.1")
    for ip in interface_addresses() if addresses is None else addresses:
        add(str(ip))
    return Names(tuple(dns), tuple(ips))


# -- files -----------------------------------------------------------------------------------

def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically, with its mode from the first byte on (a key is never readable by others,
    not even half-written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _same_key(a: object, b: object) -> bool:
    """Two public keys are one (compared as SubjectPublicKeyInfo)."""
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(*der) == b.public_bytes(*der)  # type: ignore[attr-defined]


@contextmanager
def _locked(settings: Settings) -> Iterator[Path]:
    """One writer at a time (`onelab up` and a proxy that supervisord restarts may meet)."""
    d = tls_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)  # the CA certificate is for handing out; the keys are 0600
    with open(d / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield d
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- the local CA and the server certificate -------------------------------------------------

def _make_ca(settings: Settings, now: dt.datetime) -> tuple[x509.Certificate,
                                                            ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OneLab"),
        x509.NameAttribute(NameOID.COMMON_NAME,
                           f"OneLab local CA ({socket.gethostname()}, {now:%Y-%m-%d})"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(_ca_key_path(settings), _key_pem(key), 0o600)
    _write(ca_path(settings), _cert_pem(cert), 0o644)
    return cert, key


def _load_ca(settings: Settings) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(ca_path(settings).read_bytes())
        key = serialization.load_pem_private_key(_ca_key_path(settings).read_bytes(), None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or \
            not _same_key(key.public_key(), cert.public_key()):
        return None
    return cert, key


def _make_server(settings: Settings, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                 names: Names, now: dt.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names.dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in names.ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OneLab"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, names.all()[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=SERVER_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = local_files(settings)
    _write(files.key, _key_pem(key), 0o600)  # the key first: a new cert never meets an old key
    _write(files.cert, _cert_pem(cert), 0o644)


def cert_names(cert: x509.Certificate) -> Names:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return Names((), ())
    return Names(tuple(san.get_values_for_type(x509.DNSName)),
                 tuple(str(i) for i in san.get_values_for_type(x509.IPAddress)))


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def renewal_reason(settings: Settings, ca: x509.Certificate, names: Names,
                   now: dt.datetime) -> str | None:
    """Why the server certificate must be made afresh, or None when it is good."""
    files = local_files(settings)
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), None)
    except (OSError, ValueError, TypeError):
        return "missing"
    if not _same_key(key.public_key(), cert.public_key()):
        return "key mismatch"
    if not signed_by(cert, ca):
        return "another CA"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return "expiring"
    have = cert_names(cert)
    if (sorted(have.dns), sorted(have.ips)) != (sorted(names.dns), sorted(names.ips)):
        return "names changed"
    return None


def _check_operator(settings: Settings, now: dt.datetime) -> Files:
    h = settings.hub
    assert h.tls_cert is not None and h.tls_key is not None
    try:
        cert = x509.load_pem_x509_certificate(h.tls_cert.read_bytes())
    except (OSError, ValueError) as e:
        raise OneLabError(N_("hub.tls_cert = {path}: not a PEM certificate ({why})"),
                          path=h.tls_cert, why=e) from None
    try:
        key = serialization.load_pem_private_key(h.tls_key.read_bytes(), None)
    except (OSError, ValueError, TypeError) as e:
        raise OneLabError(N_("hub.tls_key = {path}: not an unencrypted PEM private key ({why})"),
                          path=h.tls_key, why=e) from None
    if not _same_key(key.public_key(), cert.public_key()):
        raise OneLabError(N_("hub.tls_key = {key} is not the key of hub.tls_cert = {cert}"),
                          key=h.tls_key, cert=h.tls_cert)
    if cert.not_valid_after_utc < now:
        raise OneLabError(N_("hub.tls_cert = {path} expired on {date}"), path=h.tls_cert,
                          date=f"{cert.not_valid_after_utc:%Y-%m-%d}")
    return Files(cert=h.tls_cert, key=h.tls_key, ca=None)


def ensure(settings: Settings, now: dt.datetime | None = None,
           addresses: list[Address] | None = None) -> Files | None:
    """The certificate the proxy serves, made or renewed as needed; None when the public port
    is plain HTTP (loopback without an operator's certificate). A broken certificate of the
    operator's is an error naming its setting."""
    if not settings.hub.tls:
        return None
    now = now or _now()
    if settings.hub.tls_cert is not None:
        return _check_operator(settings, now)
    names = wanted_names(settings, addresses)
    with _locked(settings):
        loaded = _load_ca(settings)
        if loaded is None or loaded[0].not_valid_after_utc - now < RENEW_BEFORE:
            loaded = _make_ca(settings, now)
        ca, ca_key = loaded
        if renewal_reason(settings, ca, names, now):
            _make_server(settings, ca, ca_key, names, now)
    return local_files(settings)


def describe(settings: Settings) -> dict[str, object]:
    """What `onelab tls show` prints: whether the public port is HTTPS, the CA to hand to
    browsers, and the certificate's names and expiry (as it is on disk now)."""
    info: dict[str, object] = {"url": settings.public_url, "tls": settings.hub.tls}
    if not settings.hub.tls:
        return info
    operator = settings.hub.tls_cert is not None
    files = local_files(settings)
    cert_path = settings.hub.tls_cert if operator else files.cert
    info.update(ca=None if operator else str(files.ca), cert=str(cert_path),
                operator=operator)
    try:
        assert cert_path is not None
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        info["names"] = None
        return info
    info.update(names=cert_names(cert).all(), not_after=cert.not_valid_after_utc.isoformat(),
                issuer=cert.issuer.rfc4514_string())
    if not operator:
        loaded = _load_ca(settings)
        if loaded is not None:
            fp = loaded[0].fingerprint(hashes.SHA256()).hex(":").upper()
            info.update(ca_sha256=fp, ca_not_after=loaded[0].not_valid_after_utc.isoformat())
    return info

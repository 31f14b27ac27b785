"""HTTPS beyond loopback: the rule, the certificate OneLab makes (its names, its CA, its keys'
modes, its renewal), an operator's certificate checked before use, and what the proxy and the
hub are told."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from traitlets.config import Config

from hub.runtime import proxy_command
from hub.tls import configure_tls
from onelab import tls
from onelab.errors import OneLabError, SettingsError
from onelab.settings import is_loopback, load

LAN = [ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::10")]


def settings_for(tmp_path: Path, **env: str):
    environ = {"ONELAB_STATE_DIR": str(tmp_path / "state")}
    environ.update({f"ONELAB_HUB__{k.upper()}": v for k, v in env.items()})
    return load(path=None, environ=environ)


def handshake(files: tls.Files, cafile: str, host: str) -> None:
    """A real TLS handshake in memory: the client trusts only `cafile` and checks `host`."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.cert, files.key)
    client_ctx = ssl.create_default_context(cafile=cafile)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=host)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# ---- the rule ------------------------------------------------------------------------------

@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.0.2.10", False),
    ("10.0.0.5", False), ("fd00::2", False), ("onelab.example", False),
])
def test_only_loopback_stays_plain_http(tmp_path, host, loopback):
    assert is_loopback(host) is loopback
    s = settings_for(tmp_path, ip=f"'{host}'")  # quoted: the environment's values are YAML
    assert s.hub.tls is not loopback
    assert s.public_url.startswith("http://" if loopback else "https://")
    assert (tls.ensure(s, addresses=LAN) is None) is loopback


def test_public_url_names_what_learners_open(tmp_path, monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "Classroom-7")
    assert settings_for(tmp_path).public_url == "http://127.0.0.1:8000/"
    assert settings_for(tmp_path, ip="192.0.2.10").public_url == "https://192.0.2.10:8000/"
    assert settings_for(tmp_path, ip="2001:db8::10").public_url == "https://[2001:db8::10]:8000/"
    # every interface: this machine's name (in the certificate), or the operator's first name
    assert settings_for(tmp_path, ip="0.0.0.0").public_url == "https://classroom-7:8000/"
    assert settings_for(tmp_path, ip="0.0.0.0", tls_hostnames="[lab.school.kr, 10.1.1.1]"
                        ).public_url == "https://lab.school.kr:8000/"


def test_verify_for_trusts_the_local_ca_only_for_its_own_certificate(tmp_path):
    assert tls.verify_for(settings_for(tmp_path)) is True
    s = settings_for(tmp_path, ip="0.0.0.0")
    assert tls.verify_for(s) is True  # no CA yet: nothing to trust
    tls.ensure(s, addresses=LAN)
    assert tls.verify_for(s) == str(tmp_path / "state" / "tls" / "ca.crt")
    cert, key = operator_pair(tmp_path)
    assert tls.verify_for(settings_for(tmp_path, ip="0.0.0.0", tls_cert=str(cert),
                                       tls_key=str(key))) is True


# ---- the certificate OneLab makes ----------------------------------------------------------

def test_certificate_names_this_machine_and_is_signed_by_the_local_ca(tmp_path, monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "classroom-7")
    s = settings_for(tmp_path, ip="192.0.2.10", tls_hostnames="[lab.school.kr, 198.51.100.7]")
    files = tls.ensure(s, addresses=LAN)
    assert files is not None and files.ca == tls.ca_path(s)
    names = tls.cert_names(load_cert(files.cert))
    assert set(names.dns) == {"lab.school.kr", "classroom-7", "localhost"}
    assert set(names.ips) == {"192.0.2.10", "198.51.100.7", "127.0.0.1", "2001:db8::10"}
    ca = load_cert(files.ca)
    assert tls.signed_by(load_cert(files.cert), ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for host in ("192.0.2.10", "lab.school.kr", "localhost", "127.0.0.1", "2001:db8::10"):
        handshake(files, str(files.ca), host)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(files, str(files.ca), "192.0.2.99")  # a name it does not carry


def test_keys_are_the_owners_alone(tmp_path):
    s = settings_for(tmp_path, ip="0.0.0.0")
    files = tls.ensure(s, addresses=LAN)
    assert files is not None
    d = tls.tls_dir(s)
    assert stat.S_IMODE((d / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.cert.stat().st_mode) == 0o644
    assert not [p for p in d.iterdir() if p.name.startswith(".ca.key") or ".tmp" in p.name]


def test_renewed_when_names_change_or_expiry_nears_and_only_then(tmp_path):
    s = settings_for(tmp_path, ip="0.0.0.0")
    files = tls.ensure(s, addresses=LAN)
    assert files is not None
    ca_fp = load_cert(files.ca).fingerprint(hashes.SHA256())
    first = load_cert(files.cert)

    tls.ensure(s, addresses=LAN)
    assert load_cert(files.cert).serial_number == first.serial_number  # nothing changed

    tls.ensure(s, addresses=[*LAN, ipaddress.ip_address("192.0.2.11")])  # a new address
    second = load_cert(files.cert)
    assert second.serial_number != first.serial_number
    assert "192.0.2.11" in tls.cert_names(second).ips

    soon = second.not_valid_after_utc - dt.timedelta(days=10)
    tls.ensure(s, now=soon, addresses=[*LAN, ipaddress.ip_address("192.0.2.11")])
    third = load_cert(files.cert)
    assert third.serial_number != second.serial_number
    assert third.not_valid_after_utc > second.not_valid_after_utc
    # the CA stays: browsers that trust it keep trusting every renewal
    assert load_cert(files.ca).fingerprint(hashes.SHA256()) == ca_fp
    assert tls.signed_by(third, load_cert(files.ca))


def test_a_broken_server_certificate_is_made_again(tmp_path):
    s = settings_for(tmp_path, ip="0.0.0.0")
    files = tls.ensure(s, addresses=LAN)
    assert files is not None
    files.key.write_bytes(b"not a key")
    tls.ensure(s, addresses=LAN)
    assert tls.renewal_reason(s, load_cert(files.ca), tls.wanted_names(s, LAN),
                              tls._now()) is None
    handshake(files, str(files.ca), "localhost")


def test_interface_addresses_are_this_machines_beyond_loopback():
    for ip in tls.interface_addresses():
        assert not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)


def test_tls_show_tells_where_the_ca_is(tmp_path, monkeypatch, capsys):
    from onelab_cli import main as cli

    monkeypatch.delenv("ONELAB_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ONELAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ONELAB_HUB__IP", "0.0.0.0")
    assert cli.main(["tls", "show", "--json"], environ={"ONELAB_LANG": "en"}) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tls"] and info["ca"] == str(tmp_path / "state" / "tls" / "ca.crt")
    assert "localhost" in info["names"] and info["not_after"]
    assert cli.main(["tls", "show"], environ={"ONELAB_LANG": "en"}) == 0
    assert "learners' browsers" in capsys.readouterr().out


# ---- an operator's certificate --------------------------------------------------------------

def operator_pair(tmp_path: Path, days: int = 90, name: str = "lab.school.kr"
                  ) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}-{days}.crt", tmp_path / f"{name}-{days}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_an_operator_certificate_is_served_as_it_is(tmp_path):
    cert, key = operator_pair(tmp_path)
    s = settings_for(tmp_path, ip="0.0.0.0", tls_cert=str(cert), tls_key=str(key))
    assert tls.ensure(s) == tls.Files(cert=cert, key=key, ca=None)
    assert not tls.tls_dir(s).exists()  # no local CA when the operator brings a certificate
    cmd = proxy_command(s, "172.30.0.1")  # what the proxy serves: the operator's files
    assert cmd[cmd.index("--ssl-cert") + 1] == str(cert)
    assert cmd[cmd.index("--ssl-key") + 1] == str(key)
    handshake(tls.Files(cert, key, None), str(cert), "lab.school.kr")  # browsers trust it
    assert tls.verify_for(s) is True  # the system's trust (or $REQUESTS_CA_BUNDLE)
    assert tls.describe(s)["operator"] is True and tls.describe(s)["ca"] is None
    # on loopback too, when given
    s = settings_for(tmp_path, tls_cert=str(cert), tls_key=str(key))
    assert s.hub.tls and s.public_url.startswith("https://")


@pytest.mark.parametrize("env, expected", [
    ({"tls_cert": "{cert}"}, r"bad setting hub.tls_key = None .*must be set with hub.tls_cert"),
    ({"tls_key": "{key}"}, r"bad setting hub.tls_key = .*set without hub.tls_cert"),
    ({"tls_cert": "/nonexistent/onelab.crt", "tls_key": "{key}"},
     r"bad setting hub.tls_cert = '/nonexistent/onelab.crt' \(from environment "
     r"ONELAB_HUB__TLS_CERT\): no such file"),
    ({"tls_cert": "{cert}", "tls_key": "/nonexistent/onelab.key"},
     r"bad setting hub.tls_key = '/nonexistent/onelab.key'.*no such file"),
    ({"tls_hostnames": "[lab_school]", "ip": "0.0.0.0"},
     r"hub.tls_hostnames.*'lab_school' is neither a DNS name nor an IP address"),
    ({"http_redirect_port": "8080"}, r"hub.http_redirect_port = .*needs HTTPS"),
    ({"http_redirect_port": "8000", "ip": "0.0.0.0"}, r"must differ from hub.port"),
])
def test_tls_settings_are_checked_and_named(tmp_path, env, expected):
    cert, key = operator_pair(tmp_path)
    env = {k: v.format(cert=cert, key=key) for k, v in env.items()}
    with pytest.raises(SettingsError, match=expected) as info:
        settings_for(tmp_path, **env)
    assert "\n" not in str(info.value)


def test_a_broken_operator_certificate_is_named_before_start(tmp_path):
    cert, key = operator_pair(tmp_path)
    _, other_key = operator_pair(tmp_path, name="other.example")
    with pytest.raises(OneLabError, match=r"hub.tls_key = .* is not the key of hub.tls_cert"):
        tls.ensure(settings_for(tmp_path, ip="0.0.0.0", tls_cert=str(cert),
                                tls_key=str(other_key)))
    expired, expired_key = operator_pair(tmp_path, days=-1)
    with pytest.raises(OneLabError, match=r"hub.tls_cert = .* expired on"):
        tls.ensure(settings_for(tmp_path, ip="0.0.0.0", tls_cert=str(expired),
                                tls_key=str(expired_key)))
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("hello")
    with pytest.raises(OneLabError, match=r"hub.tls_cert = .*garbage.crt: not a PEM certificate"):
        tls.ensure(settings_for(tmp_path, ip="0.0.0.0", tls_cert=str(garbage), tls_key=str(key)))


# ---- what the proxy and the hub are told ----------------------------------------------------

def test_the_proxy_serves_only_tls_beyond_loopback(tmp_path):
    plain = proxy_command(settings_for(tmp_path), "172.30.0.1")
    assert not any(a.startswith(("--ssl", "--redirect")) for a in plain)

    s = settings_for(tmp_path, ip="0.0.0.0", http_redirect_port="8080")
    cmd = proxy_command(s, "172.30.0.1")
    files = tls.local_files(s)
    assert cmd[cmd.index("--ssl-cert") + 1] == str(files.cert) and files.cert.exists()
    assert cmd[cmd.index("--ssl-key") + 1] == str(files.key) and files.key.exists()
    assert cmd[cmd.index("--redirect-port") + 1] == "8080"
    assert cmd[cmd.index("--redirect-to") + 1] == "8000"


def test_hub_cookies_are_secure_with_tls(tmp_path):
    c = Config()
    configure_tls(c, settings_for(tmp_path))
    assert "tornado_settings" not in c.JupyterHub
    c = Config()
    c.JupyterHub.tornado_settings = {"transforms": ["kept"], "cookie_options": {"samesite": "Lax"}}
    configure_tls(c, settings_for(tmp_path, ip="0.0.0.0"))
    # where JupyterHub 6 reads the options of its cookies, its _xsrf cookie and the learners'
    assert c.JupyterHub.tornado_settings == {"transforms": ["kept"],
                                             "cookie_options": {"samesite": "Lax", "secure": True}}


def test_a_hub_client_trusts_the_ca_it_is_given_whatever_the_environment(monkeypatch):
    from onelab.hubclient import Hub

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    hub = Hub("https://192.0.2.10:8000/", verify="/state/tls/ca.crt")
    merged = hub.http.merge_environment_settings(hub.url, {}, None, None, None)
    assert merged["verify"] == "/state/tls/ca.crt"
    assert hub.server("hana").http.merge_environment_settings(
        hub.url, {}, None, None, None)["verify"] == "/state/tls/ca.crt"
    # without a CA of OneLab's, the environment's trust is used (an operator's private CA)
    plain = Hub("https://lab.school.kr/")
    assert plain.http.merge_environment_settings(plain.url, {}, None, None, None)["verify"] \
        == "/etc/ssl/certs/ca-certificates.crt"

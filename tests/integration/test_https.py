"""HTTPS beyond loopback, for real: a platform listening on one of this machine's own addresses
(not loopback) answers only TLS there, with a certificate OneLab's local CA signed for that
address; plain HTTP to the port gets no answer (a second port redirects it); the login's cookies
are Secure. Real `onelab up`, real proxy and hub, a real login through the form."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
from pathlib import Path

import pytest
import requests

from onelab import tls
from onelab.hubclient import Hub
from tests.conftest import Platform, free_port, start_platform, stop_platform

pytestmark = pytest.mark.integration


def own_address() -> str:
    """An IPv4 address of this machine beyond loopback, read from its interfaces (its main
    interface's, else Docker's bridge gateway): never another host's."""
    for ip in tls.interface_addresses():
        if isinstance(ip, ipaddress.IPv4Address):
            return str(ip)
    from onelab import dockerdoor

    gateway = dockerdoor.client().networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    return str(ipaddress.ip_address(gateway))


@pytest.fixture(scope="module")
def addr() -> str:
    return own_address()


@pytest.fixture(scope="module")
def plat(docker_ready, tmp_path_factory, addr):
    p = start_platform(tmp_path_factory.mktemp("https"), ONELAB_HUB__IP=addr,
                       ONELAB_HUB__HTTP_REDIRECT_PORT=str(free_port()))
    yield p
    stop_platform(p)


def check_https(p: Platform, addr: str) -> None:
    """Everything a learner's browser would notice, on a running platform at `addr`."""
    s = p.settings()
    port = s.hub.port
    url = s.public_url
    assert url == f"https://{addr}:{port}/"
    ca = tls.verify_for(s)
    assert ca == str(p.state_dir / "tls" / "ca.crt") and Path(ca).is_file()

    # the login page over https, trusting only OneLab's CA
    r = requests.get(f"{url}hub/login", verify=ca, timeout=30)
    assert r.status_code == 200 and 'name="password"' in r.text

    # the certificate names the address (the handshake checks it) and comes from that CA
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection((addr, port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=addr) as conn:
        sans = conn.getpeercert()["subjectAltName"]
    assert ("IP Address", addr) in sans and ("DNS", "localhost") in sans
    # ... and a client that does not trust the CA refuses it: nothing is quietly accepted
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}hub/login", timeout=30)

    # plain HTTP to the same port gets no HTTP answer: no page, no redirect, the connection ends
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{addr}:{port}/hub/login", timeout=10)
    assert not plain_http_answer(addr, port).startswith(b"HTTP/")
    # the redirect port sends it to https
    r = requests.get(f"http://{addr}:{s.hub.http_redirect_port}/hub/login", timeout=10,
                     allow_redirects=False)
    assert r.status_code in (301, 302, 307, 308)
    assert r.headers["Location"] == f"https://{addr}:{port}/hub/login"

    # the operator's view: where the CA is, the names, the expiry
    info = json.loads(p.cli("tls", "show", "--json").stdout)
    assert info["ca"] == ca and addr in info["names"] and info["not_after"]

    # `onelab status` checks the hub's health through https, trusting the local CA
    st = json.loads(p.cli("status", "--json").stdout)
    assert st["url"] == url and st["healthy"] is True, st

    # a login through the form: every cookie it sets is Secure
    password = p.add_learner("hana")  # puts hana on the hub's list through the https API
    hub = Hub(url, verify=ca)
    assert hub.login("hana", password)
    names = {c.name for c in hub.http.cookies}
    assert {"_xsrf"} <= names and any(n.startswith("jupyterhub-") for n in names), names
    assert_secure(hub.http.cookies)
    assert hub.api("GET", "user")["name"] == "hana"

    # hana's own server, through the proxy over https: as a browser gets in (the hub's OAuth,
    # its cookie Secure too), with a token, and a kernel over wss://
    hub.start("hana")
    hub.wait_ready("hana")
    r = hub.http.get(f"{url}user/hana/lab", timeout=60)
    assert r.status_code == 200 and r.url.startswith(f"{url}user/hana/"), (r.status_code, r.url)
    assert any(c.name.startswith("jupyterhub-user-hana") for c in hub.http.cookies)
    assert_secure(hub.http.cookies)
    server = hub.server("hana", hub.token_for("hana"))
    r = server.request("GET", "api/status")
    assert r.status_code == 200 and "started" in r.json(), r.text[:200]
    kernel = server.start_kernel()
    try:
        res = kernel.execute("print(6 * 7)")
        assert res.ok and res.stdout.strip() == "42", res
        # from inside the container the hub's API stays the internal plain-HTTP port on the
        # learner network's gateway (no certificate to trust there), not the public https URL
        res = kernel.execute(
            "import os, urllib.request\n"
            "u = os.environ['JUPYTERHUB_API_URL']\n"
            "print(u.split('://')[0], urllib.request.urlopen(u, timeout=10).status)")
        assert res.ok and res.stdout.split() == ["http", "200"], res
    finally:
        kernel.shutdown()

    # the exchange service, through the proxy over https, with hana's token
    r = requests.get(f"{url}services/onelab-exchange/api/coursework", verify=ca, timeout=30,
                     headers={"Authorization": f"token {hub.token_for('hana')}"})
    assert r.status_code == 200, r.text[:200]


def plain_http_answer(addr: str, port: int) -> bytes:
    """What comes back to a plain HTTP request on a TLS port: b"" when the proxy closes or
    resets the connection."""
    with socket.create_connection((addr, port), timeout=10) as s:
        s.sendall(f"GET /hub/login HTTP/1.1\r\nHost: {addr}:{port}\r\n\r\n".encode())
        try:
            return s.recv(64)
        except (ConnectionResetError, TimeoutError):
            return b""


def assert_secure(cookies) -> None:
    insecure = [c.name for c in cookies if not c.secure]
    assert not insecure, f"cookies without Secure: {insecure}"


def test_https_beyond_loopback(plat, addr):
    try:
        check_https(plat, addr)
    except BaseException:
        print(plat.logs())
        raise

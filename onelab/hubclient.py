"""A small client for the hub's REST API and a learner's Jupyter server.

Used by the benchmarks, the CLI's automation commands and the integration tests: it logs in
through the real login form, starts servers through the real API and runs code in real kernels
over the Jupyter websocket protocol.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlparse

import requests
import websocket

from onelab.errors import OneLabError


class HubError(OneLabError):
    pass


class Session(requests.Session):
    """A requests Session whose own ``verify`` (a CA file) wins: plain requests lets
    $REQUESTS_CA_BUNDLE or $CURL_CA_BUNDLE replace it (psf/requests#3829), and then the local
    CA that signed an https hub's certificate would not be trusted."""

    def __init__(self, verify: str | bool = True) -> None:
        super().__init__()
        self.verify = verify

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> Any:
        return super().merge_environment_settings(url, proxies, stream,
                                                  self.verify if verify is None else verify, cert)


def _ws_url(http_url: str) -> str:
    return "ws" + http_url[len("http"):] if http_url.startswith("http") else http_url


class Hub:
    """The hub's REST API with one token (an admin's, a learner's) or a login session."""

    def __init__(self, url: str, token: str | None = None, verify: str | bool = True) -> None:
        """`verify`: requests' own, e.g. onelab.tls.verify_for(settings) for an https hub
        whose certificate OneLab's local CA signed."""
        self.url = url if url.endswith("/") else url + "/"
        self.http = Session(verify)
        if token:
            self.http.headers["Authorization"] = f"token {token}"

    # -- login through the form, as a browser would ------------------------------------------
    def login(self, username: str, password: str) -> bool:
        """Log in through /hub/login; True when the hub accepted the password."""
        r = self.http.get(f"{self.url}hub/login", timeout=30)
        xsrf = self.http.cookies.get("_xsrf", "")
        r = self.http.post(f"{self.url}hub/login", data={"username": username,
                           "password": password, "_xsrf": xsrf}, allow_redirects=False,
                           timeout=60)
        return r.status_code in (302, 303) and any(
            c.name.startswith("jupyterhub-session-id") or c.name == "jupyterhub-hub-login"
            for c in self.http.cookies)

    # -- REST API ----------------------------------------------------------------------------
    def api(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 202, 204),
            **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        # the hub's own _xsrf (path /hub/): a session that visited its server holds that one's too
        xsrf = [c.value for c in self.http.cookies if c.name == "_xsrf"
                and c.path.rstrip("/") == f"{urlparse(self.url).path}hub"] or \
            [c.value for c in self.http.cookies if c.name == "_xsrf"]
        if xsrf and "Authorization" not in self.http.headers:
            headers["X-XSRFToken"] = xsrf[0]
        r = self.http.request(method, f"{self.url}hub/api/{path.lstrip('/')}", headers=headers,
                              timeout=kw.pop("timeout", 60), **kw)
        if r.status_code not in ok:
            raise HubError(f"{method} /hub/api/{path} -> {r.status_code}: {r.text[:300]}")
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else None

    def user(self, name: str) -> dict[str, Any] | None:
        try:
            return self.api("GET", f"users/{quote(name)}")
        except HubError as e:
            if "-> 404" in str(e):
                return None
            raise

    def ensure_user(self, name: str) -> None:
        if self.user(name) is None:
            self.api("POST", f"users/{quote(name)}")

    def add_users(self, names: list[str], admin: bool = False) -> list[str]:
        """Create, in one request, the hub users among `names` it does not have yet (each an
        admin with `admin`); returns the names it created."""
        if not names:
            return []
        try:
            made = self.api("POST", "users", json={"usernames": names, "admin": admin})
        except HubError as e:
            if "-> 409" in str(e):  # every one of them exists already
                return []
            raise
        return [u["name"] for u in made or []]

    def set_admin(self, name: str, admin: bool) -> None:
        self.api("PATCH", f"users/{quote(name)}", json={"admin": admin})

    def start(self, name: str) -> None:
        self.api("POST", f"users/{quote(name)}/server", ok=(201, 202, 400))

    def stop(self, name: str, wait: float = 120) -> None:
        self.api("DELETE", f"users/{quote(name)}/server", ok=(202, 204, 400))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            u = self.user(name) or {}
            if not u.get("servers") and not u.get("pending"):
                return
            time.sleep(0.5)
        raise HubError(f"server of {name} did not stop within {wait:.0f} s")

    def wait_ready(self, name: str, timeout: float = 180) -> str:
        """Wait until the user's default server is ready; returns its URL prefix (/user/name/)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            u = self.user(name) or {}
            srv = (u.get("servers") or {}).get("")
            if srv and srv.get("ready"):
                return srv["url"]
            if not srv and not u.get("pending"):
                # spawn failed (or never started): surface the hub's message
                raise HubError(f"server of {name} is not running and not starting")
            time.sleep(0.25)
        raise HubError(f"server of {name} not ready within {timeout:.0f} s")

    def healthy(self) -> bool:
        """Whether the hub answers at all (its health URL needs no token)."""
        try:
            return self.http.get(f"{self.url}hub/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def users(self) -> list[dict[str, Any]]:
        """Every hub user, all pages of them."""
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.api("GET", f"users?offset={offset}&limit=200",
                            headers={"Accept": "application/jupyterhub-pagination+json"})
            out.extend(page["items"])
            nxt = page["_pagination"].get("next")
            if not nxt:
                return out
            offset = nxt["offset"]

    def revoke_tokens(self, name: str) -> int:
        """Delete every API token of the user (their servers' tokens too); returns how many."""
        tokens = self.api("GET", f"users/{quote(name)}/tokens")["api_tokens"]
        for t in tokens:
            self.api("DELETE", f"users/{quote(name)}/tokens/{quote(t['id'])}", ok=(204, 404))
        return len(tokens)

    def delete_user(self, name: str, wait: float = 120) -> None:
        """Delete the hub user (the hub stops a running server first and drops their tokens,
        so their login cookies no longer name anyone); retried while a server is stopping."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self.api("DELETE", f"users/{quote(name)}", ok=(204, 404))
                return
            except HubError as e:
                if "-> 400" not in str(e) or time.monotonic() > deadline:
                    raise
            time.sleep(1)

    def token_for(self, name: str, note: str = "onelab") -> str:
        return self.api("POST", f"users/{quote(name)}/tokens", json={"note": note})["token"]

    def server(self, name: str, token: str | None = None) -> Server:
        return Server(f"{self.url}user/{quote(name)}/", self.http, token)


@dataclass
class Result:
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    value: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


class Server:
    """A learner's Jupyter server, reached through the proxy."""

    def __init__(self, url: str, session: requests.Session, token: str | None = None) -> None:
        self.url = url
        self.http = Session(True if session.verify is None else session.verify)
        self.http.cookies.update(session.cookies)
        self.http.headers.update(session.headers)
        if token:
            self.http.headers["Authorization"] = f"token {token}"

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, self.url + path.lstrip("/"), timeout=kw.pop("timeout", 60),
                                 allow_redirects=kw.pop("allow_redirects", False), **kw)

    def start_kernel(self, name: str = "python3") -> Kernel:
        r = self.request("POST", "api/kernels", json={"name": name}, timeout=120)
        if r.status_code != 201:
            raise HubError(f"cannot start a kernel at {self.url}: {r.status_code} {r.text[:200]}")
        return Kernel(self, r.json()["id"])


class Kernel:
    """One kernel, driven over the Jupyter websocket protocol (JSON messages)."""

    def __init__(self, server: Server, kernel_id: str) -> None:
        self.server = server
        self.id = kernel_id
        self.session = uuid.uuid4().hex
        # requests allows bytes header values: one must not reach the socket as "b'...'"
        headers = [f"{k}: {v.decode('latin-1') if isinstance(v, bytes) else v}"
                   for k, v in server.http.headers.items() if k == "Authorization"]
        cookies = "; ".join(f"{c.name}={c.value}" for c in server.http.cookies)
        url = urlparse(server.url)
        verify = server.http.verify
        sslopt = ({"ca_certs": verify} if isinstance(verify, str) else
                  {} if verify else {"cert_reqs": ssl.CERT_NONE})
        self.ws = websocket.create_connection(
            _ws_url(server.url) + f"api/kernels/{kernel_id}/channels?session_id={self.session}",
            header=headers, cookie=cookies or None, origin=f"{url.scheme}://{url.netloc}",
            timeout=300, sslopt=sslopt)

    def execute(self, code: str, timeout: float = 300) -> Result:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "onelab", "session": self.session,
                       "msg_type": "execute_request", "version": "5.3",
                       "date": datetime.now(UTC).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        res = Result()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(1.0, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg.get("content", {})
            if kind == "stream":
                if content.get("name") == "stderr":
                    res.stderr += content.get("text", "")
                else:
                    res.stdout += content.get("text", "")
            elif kind == "error":
                res.error = f"{content.get('ename')}: {content.get('evalue')}"
            elif kind in ("execute_result", "display_data"):
                res.outputs.append(content.get("data", {}))
                if kind == "execute_result":
                    res.value = content.get("data", {}).get("text/plain")
            elif kind == "status" and content.get("execution_state") == "idle":
                return res
        raise HubError(f"code did not finish within {timeout:.0f} s")

    def shutdown(self) -> None:
        try:
            self.ws.close()
        finally:
            self.server.request("DELETE", f"api/kernels/{self.id}")

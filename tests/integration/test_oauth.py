"""Online SSO: the real hub and oauthenticator against a small OAuth2 identity provider on
loopback. Allowed groups get in, others do not; groups map to admin and to OneLab roles."""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests

from tests.conftest import start_platform, stop_platform

pytestmark = pytest.mark.integration


class IdentityProvider:
    """Authorization-code flow, auto-approving as whoever the test says is at the keyboard."""

    def __init__(self) -> None:
        self.person: dict = {}
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/authorize":
                    code = secrets.token_hex(8)
                    idp.codes[code] = dict(idp.person)
                    self.send_response(302)
                    self.send_header("Location", q["redirect_uri"] + "?" + urlencode(
                        {"code": code, "state": q.get("state", "")}))
                    self.end_headers()
                elif url.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    if token not in idp.tokens:
                        return self._json(401, {"error": "invalid_token"})
                    self._json(200, idp.tokens[token])
                else:
                    self._json(404, {})

            def do_POST(self):
                body = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                code = body.get("code", [""])[0]
                if urlparse(self.path).path != "/token" or code not in idp.codes:
                    return self._json(400, {"error": "invalid_grant"})
                token = secrets.token_hex(16)
                idp.tokens[token] = idp.codes.pop(code)
                self._json(200, {"access_token": token, "token_type": "Bearer"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def sso(docker_ready, tmp_path_factory):
    idp = IdentityProvider()
    p = start_platform(
        tmp_path_factory.mktemp("sso"),
        ONELAB_AUTH__KIND="oauth",
        ONELAB_AUTH__OAUTH__CLIENT_ID="onelab",
        ONELAB_AUTH__OAUTH__CLIENT_SECRET="idp-secret",
        ONELAB_AUTH__OAUTH__AUTHORIZE_URL=f"{idp.url}/authorize",
        ONELAB_AUTH__OAUTH__TOKEN_URL=f"{idp.url}/token",
        ONELAB_AUTH__OAUTH__USERDATA_URL=f"{idp.url}/userinfo",
        ONELAB_AUTH__OAUTH__ALLOWED_GROUPS="[ai-students, ai-teachers]",
        ONELAB_AUTH__OAUTH__ADMIN_GROUPS="[it-admins]",
        ONELAB_AUTH__OAUTH__GROUP_ROLES="{instructor: [ai-teachers]}",
    )
    yield p, idp
    idp.server.shutdown()
    stop_platform(p)


def sso_login(platform, idp, username: str, groups: list[str]) -> requests.Session:
    idp.person = {"preferred_username": username, "groups": groups}
    s = requests.Session()
    s.get(f"{platform.url}hub/oauth_login", params={"next": "/hub/home"}, timeout=60)
    return s


def test_allowed_groups_log_in_and_others_are_refused(sso):
    platform, idp = sso
    student = sso_login(platform, idp, "s2026001", ["ai-students"])
    me = student.get(f"{platform.url}hub/api/user", timeout=30).json()
    assert me["name"] == "s2026001" and me["admin"] is False
    assert "ai-students" in me["groups"]

    outsider = sso_login(platform, idp, "visitor", ["guests"])
    r = outsider.get(f"{platform.url}hub/api/user", timeout=30)
    assert r.status_code in (401, 403)
    assert platform.admin().user("visitor") is None


def test_groups_map_to_admin_and_instructor_role(sso):
    platform, idp = sso
    it = sso_login(platform, idp, "itkim", ["it-admins", "ai-students"])
    assert it.get(f"{platform.url}hub/api/user", timeout=30).json()["admin"] is True

    teacher = sso_login(platform, idp, "teacher1", ["ai-teachers"])
    student = sso_login(platform, idp, "s2026002", ["ai-students"])
    admin = platform.admin()
    t_token = admin.token_for("teacher1")
    s_token = admin.token_for("s2026002")
    # The instructor role (granted to the ai-teachers group) may see the class; a learner not.
    r = requests.get(f"{platform.url}hub/api/users",
                     headers={"Authorization": f"token {t_token}"}, timeout=30)
    assert r.status_code == 200 and {"s2026001", "s2026002"} <= {u["name"] for u in r.json()}
    r = requests.get(f"{platform.url}hub/api/users",
                     headers={"Authorization": f"token {s_token}"}, timeout=30)
    assert r.status_code == 403  # learners may not list the class
    assert teacher.get(f"{platform.url}hub/api/user", timeout=30).json()["admin"] is False
    assert student.get(f"{platform.url}hub/api/user", timeout=30).status_code == 200

"""The audit log: one JSON line per admin action, owner-only, appended, never a secret; written
by the onelab command, by the hub for admin API requests, and by the course dashboard."""

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from hub.audit import api_action, audit_request, configure_audit
from onelab import audit
from onelab.settings import load
from onelab_cli.main import main


def test_a_record_is_one_json_line_appended_to_an_owner_only_file(tmp_path):
    audit.record(tmp_path, "kim", "users.add", "minji", "ok", admin=False)
    audit.record(tmp_path, "lee", "users.unlock", "address 10.0.0.7", "failed",
                 error="no such lock", when_note="한국어 그대로")
    file = tmp_path / "logs" / "audit.log"
    assert file.stat().st_mode & 0o777 == 0o600
    lines = file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert list(first)[:5] == ["time", "actor", "action", "target", "outcome"]
    assert (first["actor"], first["action"], first["target"], first["outcome"]) == \
        ("kim", "users.add", "minji", "ok")
    assert datetime.fromisoformat(first["time"]).tzinfo == UTC or first["time"].endswith("+00:00")
    assert audit.read(tmp_path)[1]["when_note"] == "한국어 그대로"


def test_no_secret_reaches_the_log(tmp_path):
    audit.record(tmp_path, "kim", "users.passwd", "minji", "ok", password="hunter2-secret",
                 api_token="abc123tokenvalue", extra={"client_secret": "s3", "note": "fine"})
    text = (tmp_path / "logs" / "audit.log").read_text()
    for secret in ("hunter2-secret", "abc123tokenvalue", "s3\""):
        assert secret not in text
    assert '"note": "fine"' in text


def cli(tmp_path, monkeypatch, *args):
    monkeypatch.chdir(tmp_path)
    for name in ("ONELAB_CONFIG", "ONELAB_HUB__DB_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {"ONELAB_STATE_DIR": str(tmp_path / "state"), "ONELAB_LANG": "en"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return main(list(args), environ=env)


def test_the_command_records_who_did_what_and_never_the_password(tmp_path, monkeypatch, capsys):
    from hub.accounts import Accounts

    state = tmp_path / "state"
    Accounts(load(path=None, environ={"ONELAB_STATE_DIR": str(state)}).db_url).add(
        "minji", "first-password")
    assert cli(tmp_path, monkeypatch, "users", "passwd", "minji", "--password",
               "very-secret-new-pw") == 0
    assert cli(tmp_path, monkeypatch, "users", "passwd", "nobody", "--password",
               "very-secret-new-pw") == 2
    assert cli(tmp_path, monkeypatch, "users", "unlock", "--address", "10.0.0.7") == 0
    assert cli(tmp_path, monkeypatch, "users", "locks") == 0  # a read: not recorded
    records = audit.read(state)
    assert [(r["action"], r["target"], r["outcome"]) for r in records] == [
        ("users.passwd", "minji", "ok"), ("users.passwd", "nobody", "failed"),
        ("users.unlock", "address 10.0.0.7", "ok")]
    assert records[0]["actor"] == audit.os_actor() and records[0]["via"] == "onelab"
    assert records[1]["error"] == "no user nobody" and records[1]["exit"] == 2
    assert "very-secret-new-pw" not in (state / "logs" / "audit.log").read_text()


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("POST", "/hub/api/users/minji", ("hub.user.create", "minji", "minji")),
    ("DELETE", "/hub/api/users/minji", ("hub.user.delete", "minji", "minji")),
    ("PATCH", "/hub/api/users/minji", ("hub.user.modify", "minji", "minji")),
    ("POST", "/hub/api/users/minji/server", ("hub.server.start", "minji", "minji")),
    ("DELETE", "/hub/api/users/minji/servers/lab2", ("hub.server.stop", "minji/lab2", "minji")),
    ("POST", "/hub/api/users/minji/tokens", ("hub.token.create", "minji/tokens", "minji")),
    ("POST", "/hub/api/groups/c1/users", ("hub.api.post", "groups/c1/users", None)),
    ("POST", "/hub/api/users/minji/activity", None),
    ("POST", "/hub/api/oauth2/token", None),
    ("GET", "/hub/api/users", None),
    ("POST", "/hub/login", None),
])
def test_which_api_requests_are_admin_actions(method, path, expected):
    assert api_action(method, path) == expected


def api_handler(actor, method, path, status=200, body=b"", query=""):
    return SimpleNamespace(
        _jupyterhub_user=actor, get_status=lambda: status, hub=SimpleNamespace(ip="172.31.0.1"),
        request=SimpleNamespace(method=method, path=path, uri=path + query, body=body,
                                remote_ip="127.0.0.1", headers={"X-Forwarded-For": "10.0.0.9"},
                                connection=SimpleNamespace(context=SimpleNamespace(
                                    _orig_remote_ip="127.0.0.1"))))


def test_the_hub_records_admin_api_actions_and_not_a_learners_own(tmp_path):
    admin = SimpleNamespace(kind="user", name="teacher", admin=True)
    learner = SimpleNamespace(kind="user", name="minji", admin=False)
    instructor = SimpleNamespace(kind="user", name="lee", admin=False)
    service = SimpleNamespace(kind="service", name="onelab-admin")
    audit_request(api_handler(admin, "PATCH", "/hub/api/users/minji",
                              body=json.dumps({"admin": True}).encode()), tmp_path, "/")
    audit_request(api_handler(learner, "POST", "/hub/api/users/minji/server", 201), tmp_path, "/")
    audit_request(api_handler(learner, "POST", "/hub/api/users/jisoo/server", 403), tmp_path, "/")
    audit_request(api_handler(instructor, "DELETE", "/hub/api/users/minji/server", 204),
                  tmp_path, "/")
    audit_request(api_handler(service, "POST", "/hub/api/users", 201,
                              body=json.dumps({"usernames": ["a1", "a2"]}).encode()),
                  tmp_path, "/")
    audit_request(api_handler(admin, "POST", "/hub/api/users/minji/tokens", 201,
                              body=b'{"note": "x"}', query="?token=leaked-secret-value"),
                  tmp_path, "/")
    audit_request(api_handler(None, "DELETE", "/hub/api/users/minji", 403), tmp_path, "/")
    got = [(r["actor"], r["action"], r["target"], r["outcome"]) for r in audit.read(tmp_path)]
    assert got == [
        ("teacher", "hub.user.modify", "minji", "ok"),
        ("minji", "hub.server.start", "jisoo", "refused"),
        ("lee", "hub.server.stop", "minji", "ok"),
        ("service:onelab-admin", "hub.user.create", "a1, a2", "ok"),
        ("teacher", "hub.token.create", "minji/tokens", "ok"),
    ]
    first = audit.read(tmp_path)[0]
    assert first["admin"] is True and first["address"] == "10.0.0.9" and first["status"] == 200
    assert "leaked-secret-value" not in (tmp_path / "logs" / "audit.log").read_text()


def test_the_hub_hook_chains_jupyterhubs_request_log(tmp_path, caplog):
    c = Config()
    settings = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path)})
    c.JupyterHub.tornado_settings = {"transforms": ["kept"]}
    configure_audit(c, settings)
    assert c.JupyterHub.tornado_settings["transforms"] == ["kept"]
    log_function = c.JupyterHub.tornado_settings["log_function"]
    admin = SimpleNamespace(kind="user", name="teacher", admin=True)
    handler = api_handler(admin, "DELETE", "/hub/api/users/minji", 204)
    handler.current_user = admin
    handler.request.request_time = lambda: 0.01
    with caplog.at_level("INFO"):
        log_function(handler)
    assert "204 DELETE /hub/api/users/minji (teacher@127.0.0.1)" in caplog.text  # JupyterHub's
    assert audit.read(tmp_path)[0]["action"] == "hub.user.delete"


def test_onelab_settings_shows_no_secret(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ONELAB_AUTH__OAUTH__CLIENT_SECRET", "oauth-client-secret-value")
    monkeypatch.setenv("ONELAB_HUB__DB_URL", "postgresql://onelab:db-pass-value@127.0.0.1/onelab")
    monkeypatch.chdir(tmp_path)
    assert main(["settings"], environ={"ONELAB_STATE_DIR": str(tmp_path), "ONELAB_LANG": "en"}) \
        == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["auth"]["oauth"]["client_secret"] == "[set, not shown]"
    assert shown["hub"]["db_url"] == "postgresql://onelab:***@127.0.0.1/onelab"


def test_a_secret_file_with_a_loose_mode_is_made_owner_only(tmp_path):
    from hub.state import admin_token

    token = admin_token(tmp_path)
    f = tmp_path / "admin-api-token"
    assert f.stat().st_mode & 0o777 == 0o600
    f.chmod(0o644)  # e.g. copied back by hand
    assert admin_token(tmp_path) == token and f.stat().st_mode & 0o777 == 0o600

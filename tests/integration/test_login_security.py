"""Login security a school expects, against the real hub and proxy through the real login form:
wrong passwords lock an account (the right one is then refused, the page says why in the
reader's language) and `onelab users locks|unlock` see and lift it; a class logging in at once
from one address is never locked, wrong passwords across accounts from one address are; admin
actions land in the audit log; no secret reaches a log or `onelab` output (docs/security.md)."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from onelab import audit
from onelab.hubclient import Hub
from tests.conftest import start_platform, stop_platform

pytestmark = pytest.mark.integration

CLASS = [f"ls{i:02d}" for i in range(25)]
ADDRESS = "127.0.0.1"  # every request here comes through the proxy from loopback
LIMITS = {"ONELAB_AUTH__LOCKOUT__MAX_FAILURES": "3",
          "ONELAB_AUTH__LOCKOUT__ADDRESS_MAX_FAILURES": "5",
          "ONELAB_AUTH__LOCKOUT__LOCK_TIME": "600"}


@pytest.fixture(scope="module")
def plat(docker_ready, tmp_path_factory):
    root = tmp_path_factory.mktemp("login-security")
    p = start_platform(root, **LIMITS)
    try:
        # the class in one `users import` (one process, one roster sync), passwords given
        rows = {name: f"pw-{uuid.uuid4().hex[:12]}" for name in CLASS}
        csv = root / "class.csv"
        csv.write_text("username,password\n" + "".join(f"{n},{pw}\n" for n, pw in rows.items()))
        p.cli("users", "import", str(csv))
        p.passwords.update(rows)
        yield p
    finally:
        stop_platform(p)


def form_login(url: str, name: str, password: str, lang: str | None = None):
    """A browser's login: the form (with the 한국어 / English switch when `lang`), then the
    POST; the POST's answer (its page as UTF-8, which the hub's pages are)."""
    hub = Hub(url)
    hub.http.get(f"{url}hub/login" + (f"?lang={lang}" if lang else ""), timeout=30)
    r = hub.http.post(f"{url}hub/login", data={
        "username": name, "password": password, "_xsrf": hub.http.cookies.get("_xsrf", "")},
        allow_redirects=False, timeout=60)
    r.encoding = "utf-8"
    return r


def locks(p) -> str:
    return p.cli("users", "locks").stdout


def test_a_class_logging_in_at_once_from_one_address_is_never_locked(plat):
    def login(name: str) -> bool:
        return Hub(plat.url).login(name, plat.passwords[name])

    with ThreadPoolExecutor(len(CLASS)) as pool:
        results = dict(zip(CLASS, pool.map(login, CLASS), strict=True))
    assert all(results.values()), [n for n, ok in results.items() if not ok]
    assert "no locks" in locks(plat)  # 25 > address_max_failures: nothing was counted
    assert Hub(plat.url).login(CLASS[0], plat.passwords[CLASS[0]])


def test_wrong_passwords_lock_the_account_until_an_admin_lifts_it(plat):
    name, right = CLASS[1], plat.passwords[CLASS[1]]
    for i in range(2):
        r = form_login(plat.url, name, f"wrong-{i}")
        assert r.status_code == 403, r.status_code  # JupyterHub's "Invalid username or password"
    third = form_login(plat.url, name, "wrong-2")
    assert third.status_code == 429
    # the right password now: refused, and the login page says why, in Korean by default
    ko = form_login(plat.url, name, right)
    assert ko.status_code == 429 and "Retry-After" in ko.headers
    assert "이 계정이" in ko.text and "잠겼습니다" in ko.text, ko.text[-2000:]
    en = form_login(plat.url, name, right, lang="en")
    assert en.status_code == 429
    assert "Too many failed logins: this account is locked until" in en.text
    assert not Hub(plat.url).login(name, right)
    assert not Hub(plat.url).login(CLASS[2], "wrong")  # others are not held up by it ...
    assert Hub(plat.url).login(CLASS[2], plat.passwords[CLASS[2]])

    listed = [ln for ln in locks(plat).splitlines() if f" {name} " in f" {ln} "]
    assert listed and "locked until" in listed[0], locks(plat)
    out = plat.cli("users", "unlock", name).stdout
    assert f"unlocked {name}" in out
    assert Hub(plat.url).login(name, right)
    assert name not in locks(plat)


def test_wrong_passwords_across_accounts_lock_the_address(plat):
    plat.cli("users", "unlock", "--address", ADDRESS)  # earlier wrong passwords: start afresh
    guesses = CLASS[3:8]  # address_max_failures (5) accounts, one wrong password each
    answers = [form_login(plat.url, n, "summer2026!").status_code for n in guesses]
    assert answers[:-1] == [403] * 4 and answers[-1] == 429, answers
    # now the right password of anyone else, from this address: refused, said in Korean
    refused = form_login(plat.url, CLASS[9], plat.passwords[CLASS[9]])
    assert refused.status_code == 429 and "이 컴퓨터에서" in refused.text
    en = form_login(plat.url, CLASS[9], plat.passwords[CLASS[9]], lang="en")
    assert "Too many failed logins from this computer" in en.text
    listed = [ln for ln in locks(plat).splitlines() if ADDRESS in ln]
    assert listed and "locked until" in listed[0], locks(plat)
    assert f"unlocked {ADDRESS}" in plat.cli("users", "unlock", "--address", ADDRESS).stdout
    assert Hub(plat.url).login(CLASS[9], plat.passwords[CLASS[9]])


def records(p, action: str, target: str, timeout: float = 10) -> list[dict]:
    """The audit log's records of `action` on `target` (the hub writes its record just after it
    answered, so wait a little)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in audit.read(p.state_dir)
                 if r["action"] == action and r["target"] == target]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_admin_actions_land_in_the_audit_log(plat):
    admin = plat.admin()
    admin.api("POST", "users/audit-probe")  # through the hub's REST API with the admin token
    admin.api("DELETE", "users/audit-probe")
    plat.add_learner("audit-lee")  # `onelab users add`

    made, = records(plat, "hub.user.create", "audit-probe")
    assert made["actor"].startswith("service:") and made["outcome"] == "ok"
    assert made["via"] == "hub-api" and made["address"]
    gone, = records(plat, "hub.user.delete", "audit-probe")
    assert gone["outcome"] == "ok"
    added, = records(plat, "users.add", "audit-lee")
    assert added["actor"] and added["via"] == "onelab" and added["outcome"] == "ok"
    # the unlocks of the tests before, from the command
    assert records(plat, "users.unlock", CLASS[1])
    assert records(plat, "users.unlock", f"address {ADDRESS}")
    log = audit.path(plat.state_dir)
    assert log.stat().st_mode & 0o777 == 0o600
    text = log.read_text()
    assert plat.passwords["audit-lee"] not in text
    for line in text.splitlines():
        assert list(json.loads(line))[:5] == ["time", "actor", "action", "target", "outcome"]


SECRET_FILES = ("admin-api-token", "proxy-auth-token", "jupyterhub_cookie_secret",
                "initial-admin-password")


def test_no_secret_in_logs_or_onelab_output_and_secret_files_are_owner_only(plat):
    state = plat.state_dir
    secrets = {}
    for name in SECRET_FILES:
        f = state / name
        assert f.stat().st_mode & 0o777 == 0o600, (name, oct(f.stat().st_mode))
        secrets[name] = f.read_text().strip()
    assert all(len(v) >= 8 for v in secrets.values()), "a secret file is empty"
    secrets.update({f"password of {n}": pw for n, pw in plat.passwords.items()})

    logs = [f for f in state.rglob("*") if f.is_file() and (
        "logs" in f.relative_to(state).parts or ".log" in f.name or f.suffix == ".conf")]
    assert any(f.name == "hub.log" for f in logs) and any(f.name == "audit.log" for f in logs)
    texts = {str(f.relative_to(state)): f.read_text(errors="replace") for f in logs}
    for args in (("status",), ("status", "--json"), ("settings",), ("users", "list"),
                 ("users", "locks")):
        out = plat.cli(*args)
        texts[f"onelab {' '.join(args)}"] = out.stdout + out.stderr
    leaks = [(what, where) for where, text in texts.items()
             for what, value in secrets.items() if value in text]
    assert not leaks, leaks

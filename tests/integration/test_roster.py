"""The class roster: the hub lists every local account from the moment `onelab users add` or
`import` makes it, before anyone logs in, and forgets a removed one; accounts added or removed
while the hub was down are in step after its next start. Real hub, real CLI, read back through
the hub's own REST API (GET /hub/api/users, as the admin page and staff's scripts read it)."""

from __future__ import annotations

import pytest
import requests

from hub.accounts import Accounts
from tests.conftest import start_platform, stop_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plat(docker_ready, tmp_path_factory):
    """A platform of its own: these tests stop and start its hub."""
    p = start_platform(tmp_path_factory.mktemp("roster"))
    yield p
    stop_platform(p)


def roster(p) -> dict[str, bool]:
    """{name: admin} for every user the hub lists: GET /hub/api/users, every page of it."""
    return {u["name"]: u["admin"] for u in p.admin().users()}


def test_accounts_made_while_the_hub_runs_are_listed_before_any_login(plat, tmp_path):
    out = plat.cli("users", "add", "minji", "--password", "minji-pass-1").stdout
    assert "on the hub's user list now: minji" in out
    out = plat.cli("users", "add", "boss", "--password", "boss-pass-12", "--admin").stdout
    assert "on the hub's user list now: boss" in out
    listed = roster(plat)
    assert listed["minji"] is False and listed["boss"] is True  # nobody has logged in

    csv = tmp_path / "class.csv"
    csv.write_text("username,full_name,admin\ns2026001,김하나,\ns2026002,이둘,\nta2,조교,yes\n",
                   encoding="utf-8")
    out = plat.cli("users", "import", str(csv), "--out", str(tmp_path / "pw.csv")).stdout
    assert "on the hub's user list now: s2026001, s2026002, ta2" in out
    listed = roster(plat)
    assert (listed["s2026001"], listed["s2026002"], listed["ta2"]) == (False, False, True)

    out = plat.cli("users", "remove", "minji").stdout
    assert "hub user minji deleted" in out
    assert "minji" not in roster(plat)
    assert "s2026001" in roster(plat)  # nobody else went with them


def test_accounts_made_or_removed_while_the_hub_is_down_are_in_step_after_its_start(plat,
                                                                                     tmp_path):
    plat.cli("users", "add", "jisu", "--password", "jisu-pass-12")
    jisu_token = plat.admin().token_for("jisu")
    auth = {"Authorization": f"token {jisu_token}"}
    assert requests.get(f"{plat.url}hub/api/user", headers=auth, timeout=30).status_code == 200
    before = roster(plat)
    assert "instructor" in before  # a course's staff, with no account: the course.yml names them

    plat.cli("down")
    out = plat.cli("users", "add", "yuna", "--password", "yuna-pass-12").stdout
    assert "the hub is not running; it puts yuna on its user list when it starts" in out
    csv = tmp_path / "late.csv"
    csv.write_text("username,password,admin\ns2026101,late-pass-12,\nhelper,help-pass-12,1\n")
    plat.cli("users", "import", str(csv))
    # `users remove` still needs the hub (only it revokes tokens) and changes nothing...
    refused = plat.cli("users", "remove", "jisu", check=False)
    assert refused.returncode == 2 and "the hub is not running" in refused.stderr
    # ...but an account can go while the hub is down by other means (a restored backup of the
    # accounts, a script on the database): the hub must not keep that user, or their tokens
    s = plat.settings()
    Accounts(s.db_url, s.auth.min_password_length).remove("jisu")

    plat.cli("up", "--detach", timeout=180)
    listed = roster(plat)
    assert listed["yuna"] is False and listed["s2026101"] is False and listed["helper"] is True
    assert "jisu" not in listed
    assert requests.get(f"{plat.url}hub/api/user", headers=auth, timeout=30).status_code == 403
    # everyone else the hub listed before is still there: accounts, admins, course staff
    assert set(before) - {"jisu"} <= set(listed)
    log = (plat.state_dir / "logs" / "hub.log").read_text(errors="replace")
    assert "Roster: jisu has no local account any more" in log

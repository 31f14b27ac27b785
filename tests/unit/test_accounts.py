"""Local accounts: passwords hashed, checked, and class lists imported all-or-nothing; a
removed user's home kept under a dated name that no new account of the same name inherits."""

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from hub import accounts as accounts_mod
from hub.accounts import AccountError, Accounts, check_password, hash_password
from onelab.settings import load


@pytest.fixture
def accounts(tmp_path):
    return Accounts(f"sqlite:///{tmp_path / 'hub.sqlite'}", min_password_length=8)


def test_hash_is_salted_and_checks():
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and a.startswith("scrypt$")
    assert check_password("correct horse", a)
    assert not check_password("correct horsE", a)
    assert not check_password("x", "garbage")


def test_add_verify_and_refuse(accounts, tmp_path):
    accounts.add("kim", "s3cret-pass", full_name="김민수")
    assert accounts.verify("kim", "s3cret-pass").full_name == "김민수"
    assert accounts.verify("kim", "wrong-pass") is None
    assert accounts.verify("nobody", "s3cret-pass") is None
    raw = (tmp_path / "hub.sqlite").read_bytes()
    assert b"s3cret-pass" not in raw
    with pytest.raises(AccountError, match="exists already"):
        accounts.add("kim", "another-pass")
    with pytest.raises(AccountError, match="too short"):
        accounts.add("lee", "short")
    with pytest.raises(AccountError, match="bad username 'Kim Min'"):
        accounts.add("Kim Min", "long-enough")


def test_passwd_admin_remove(accounts):
    accounts.add("park", "first-pass")
    accounts.set_password("park", "second-pass")
    assert accounts.verify("park", "first-pass") is None
    assert accounts.verify("park", "second-pass") is not None
    accounts.set_admin("park", True)
    assert accounts.get("park").admin
    accounts.remove("park")
    assert accounts.get("park") is None
    with pytest.raises(AccountError, match="no user park"):
        accounts.remove("park")


def test_import_class_list_generates_passwords(accounts):
    generated = accounts.import_csv(
        "username,password,full_name,admin\n"
        "s2026001,,이서연,\n"
        "s2026002,given-password,Jane Doe,no\n"
        "teacher1,teach-pass,,yes\n"
    )
    assert [n for n, _ in generated] == ["s2026001"]
    name, pw = generated[0]
    assert accounts.verify(name, pw).full_name == "이서연"
    assert accounts.verify("s2026002", "given-password")
    assert accounts.get("teacher1").admin


@pytest.mark.parametrize("csv_text, message", [
    ("name,password\nkim,abcdefgh\n", "must be a header with a 'username' column"),
    ("username,pasword\nkim,abcdefgh\n", r"unknown column\(s\) \['pasword'\]"),
    ("username,password\nkim,abcdefgh\nlee,short\n", "line 3: password too short"),
    ("username\nkim\nKim Lee\n", "line 3: bad username"),
    ("username\nkim\nkim\n", "line 3: username kim appears twice"),
])
def test_bad_class_list_names_the_line_and_adds_nobody(accounts, csv_text, message):
    with pytest.raises(AccountError, match=message):
        accounts.import_csv(csv_text)
    assert accounts.all() == []


# -- removal: names of homes, kept homes, and the checks before anything changes --------------

def settings_for(tmp_path, **env):
    return load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path / "state"), **env})


def test_kept_home_name_is_dated_in_utc():
    kst = timezone(timedelta(hours=9))
    when = datetime(2026, 12, 1, 19, 15, 0, tzinfo=kst)
    assert accounts_mod.kept_home_name("onelab-home-kim", when) == \
        "onelab-home-kim.removed-20261201T101500Z"
    with pytest.raises(ValueError):
        accounts_mod.kept_home_name("onelab-home-kim", datetime(2026, 12, 1))


def test_home_volume_is_the_one_dockerspawner_mounts(tmp_path):
    from dockerspawner import DockerSpawner

    s = settings_for(tmp_path)
    for name in ("kim", "s2026001", "kim.lee", "bench-01", "a_b"):
        assert accounts_mod.docker_name(name) == DockerSpawner._escape(name)
    assert accounts_mod.home_volume(s, "kim") == "onelab-home-kim"
    assert accounts_mod.home_volume(s, "kim.lee") == "onelab-home-kim-2elee"
    s = settings_for(tmp_path, ONELAB_SPAWNER__HOME_VOLUME="lab-{username}-home")
    assert accounts_mod.home_volume(s, "bench-01") == "lab-bench-2d01-home"


@pytest.fixture
def fake_docker(monkeypatch):
    """Volumes by name, as the Docker door would list them (no engine needed)."""
    from onelab import dockerdoor

    vols: dict[str, dict[str, str]] = {}
    monkeypatch.setattr(dockerdoor, "client", lambda: None)
    monkeypatch.setattr(dockerdoor, "volume_exists", lambda n: n in vols)
    monkeypatch.setattr(dockerdoor, "volumes", lambda **labels: [
        SimpleNamespace(name=n) for n, lab in vols.items()
        if all(lab.get(k) == v for k, v in labels.items())])
    return vols


def test_kept_homes_are_this_users_only(tmp_path, fake_docker):
    s = settings_for(tmp_path)
    kept = {"onelab.role": "home-kept"}
    fake_docker.update({
        "onelab-home-kim.removed-20261201T101500Z": kept,
        "onelab-home-kim.removed-20250301T090000Z": kept,
        "onelab-home-kim2.removed-20261201T101500Z": kept,  # another user
        "onelab-home-kim.removed-later": kept,  # not a dated name
        "onelab-home-kim.removed-20270101T000000Z": {"onelab.role": "home"},  # not kept by us
        "onelab-home-kim": {},
    })
    assert accounts_mod.kept_homes(s, "kim") == ["onelab-home-kim.removed-20250301T090000Z",
                                                 "onelab-home-kim.removed-20261201T101500Z"]


def test_a_new_account_never_gets_an_old_home_silently(tmp_path, fake_docker):
    s = settings_for(tmp_path)
    assert accounts_mod.fresh_home_check(s, "kim") == []
    fake_docker["onelab-home-kim.removed-20261201T101500Z"] = {"onelab.role": "home-kept"}
    notes = accounts_mod.fresh_home_check(s, "kim")
    assert len(notes) == 1 and notes[0].startswith("note: an earlier home of kim is kept as "
                                                   "volume onelab-home-kim.removed-20261201T")
    assert "onelab users restore-home kim onelab-home-kim.removed-20261201T101500Z" in notes[0]
    fake_docker["onelab-home-kim"] = {}  # left by a removal that did not keep homes aside
    with pytest.raises(AccountError, match=r"home volume onelab-home-kim of an earlier kim.*"
                                           r"onelab users remove kim"):
        accounts_mod.fresh_home_check(s, "kim")


def test_class_list_refuses_a_name_with_an_old_home_and_adds_nobody(accounts):
    accounts.add("kim", "existing-pass")
    checked = []

    def check(name):
        checked.append(name)
        if name == "lee":
            raise AccountError("an old home of lee is there")

    with pytest.raises(AccountError, match="class list line 3: an old home of lee"):
        accounts.import_csv("username\npark\nlee\n", check_new=check)
    assert [a.name for a in accounts.all()] == ["kim"]
    accounts.import_csv("username\nkim\npark\n", replace=True, check_new=check)
    assert "kim" not in checked  # an existing account's home is their own


def test_remove_refuses_with_the_hub_down_and_changes_nothing(tmp_path):
    from tests.conftest import free_port

    s = settings_for(tmp_path, ONELAB_HUB__PORT=str(free_port()))
    acc = Accounts(s.db_url)
    acc.add("kim", "s3cret-pass")
    with pytest.raises(AccountError, match=r"the hub is not running .* start the platform "
                                           r"\(`onelab up --detach`\).*nothing was changed"):
        accounts_mod.remove_user(s, "kim", echo=lambda line: None)
    assert acc.verify("kim", "s3cret-pass") is not None

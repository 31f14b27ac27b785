"""Login throttling: wrong passwords lock an account, and an address, for a while that grows on
repeats; a lock refuses even the right password, survives a new hub (a new authenticator on the
same database), says so on the login page in the reader's language, and `onelab users unlock`
lifts it. The clock is injected."""

import asyncio
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from tornado import web
from traitlets.config import Config

from hub.accounts import Accounts
from hub.auth import LocalAccountsAuthenticator, configure_auth
from hub.lockout import ACCOUNT, ADDRESS, Lockout, Policy, client_address
from onelab import i18n
from onelab.errors import SettingsError
from onelab.settings import load

T0 = datetime(2026, 3, 2, 9, 0, 0)
POLICY = Policy(max_failures=3, address_max_failures=5, window=600, lock_time=300,
                max_lock_time=1200)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t

    def pass_(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'hub.sqlite'}"


@pytest.fixture
def clock():
    return Clock()


def wrong(lk: Lockout, name: str, address: str = "10.0.0.7"):
    """One login with a wrong password, as the authenticator makes it: the lock that refused
    or began, else None."""
    return lk.attempt(name, address) or lk.failed(name, address)


def test_an_account_locks_after_max_failures_and_opens_after_the_lock_time(db, clock):
    lk = Lockout(db, POLICY, now=clock)
    assert wrong(lk, "minji") is None and wrong(lk, "minji") is None
    lock = wrong(lk, "minji")  # the third
    assert lock.kind == ACCOUNT and lock.key == "minji"
    assert lock.locked_until == T0 + timedelta(seconds=300)
    clock.pass_(299)
    assert lk.attempt("minji", "10.0.0.8").kind == ACCOUNT  # from anywhere, any password
    clock.pass_(2)
    assert lk.attempt("minji", "10.0.0.8") is None  # the lock is over
    lk.succeeded("minji", "10.0.0.8")
    assert [e.key for e in lk.entries() if e.kind == ACCOUNT] == []


def test_repeated_locks_double_up_to_the_longest_and_a_quiet_day_starts_over(db, clock):
    lk = Lockout(db, Policy(3, 0, 600, 300, 1200), now=clock)  # the account's locks only
    lengths = []
    for _ in range(4):
        for _ in range(2):
            wrong(lk, "jisoo")
        lock = wrong(lk, "jisoo")
        lengths.append((lock.locked_until - clock()).total_seconds())
        clock.t = lock.locked_until
    assert lengths == [300, 600, 1200, 1200]
    clock.pass_(86_400)
    for _ in range(2):
        wrong(lk, "jisoo")
    assert (wrong(lk, "jisoo").locked_until - clock()).total_seconds() == 300


def test_failures_older_than_the_window_are_forgotten(db, clock):
    lk = Lockout(db, POLICY, now=clock)
    wrong(lk, "minji"), wrong(lk, "minji")
    clock.pass_(601)
    assert wrong(lk, "minji") is None and wrong(lk, "minji") is None


def test_a_good_login_clears_the_account_but_not_the_address(db, clock):
    lk = Lockout(db, POLICY, now=clock)
    wrong(lk, "minji", "10.0.0.7"), wrong(lk, "minji", "10.0.0.7")
    assert lk.attempt("minji", "10.0.0.7") is None
    lk.succeeded("minji", "10.0.0.7")
    counts = {(e.kind, e.key): e.failures for e in lk.entries()}
    assert counts == {(ADDRESS, "10.0.0.7"): 2}
    assert wrong(lk, "minji") is None and wrong(lk, "minji") is None  # counted afresh


def test_an_address_trying_many_accounts_is_locked_for_every_account(db, clock):
    lk = Lockout(db, POLICY, now=clock)
    for name in ("a1", "a2", "a3", "a4"):
        assert wrong(lk, name, "10.0.0.66") is None
    lock = wrong(lk, "a5", "10.0.0.66")
    assert (lock.kind, lock.key) == (ADDRESS, "10.0.0.66")
    assert lk.attempt("kim", "10.0.0.66").kind == ADDRESS
    assert lk.attempt("kim", "10.0.0.67") is None  # another computer is not held up


def test_parallel_guesses_are_counted_before_their_passwords_are_checked(db, clock):
    lk = Lockout(db, POLICY, now=clock)
    for _ in range(3):  # three in flight at once, none checked yet
        assert lk.attempt("minji", "10.0.0.7") is None
    assert lk.attempt("minji", "10.0.0.7").kind == ACCOUNT  # the fourth is refused


def test_right_passwords_in_flight_from_one_address_never_lock_it(db, clock):
    """A class behind one NAT address logging in at the bell (docs/benchmarks.md)."""
    lk = Lockout(db, POLICY, now=clock)
    names = [f"learner-{i}" for i in range(30)]
    for name in names:  # all 30 in flight at once, none checked yet
        assert lk.attempt(name, "10.0.0.7") is None
    for name in names:
        lk.succeeded(name, "10.0.0.7")
    assert lk.entries() == []
    assert lk.attempt("late", "10.0.0.7") is None


def test_an_address_counts_only_wrong_passwords_after_they_are_checked(db, clock):
    lk = Lockout(db, POLICY, now=clock)
    for name in ("a1", "a2", "a3", "a4"):
        assert wrong(lk, name, "10.0.0.66") is None
    for i in range(20):  # right passwords in between neither count nor forgive
        assert lk.attempt(f"ok-{i}", "10.0.0.66") is None
        lk.succeeded(f"ok-{i}", "10.0.0.66")
    assert {(e.kind, e.key): e.failures for e in lk.entries()} == {
        (ACCOUNT, n): 1 for n in ("a1", "a2", "a3", "a4")} | {(ADDRESS, "10.0.0.66"): 4}
    assert wrong(lk, "a5", "10.0.0.66").kind == ADDRESS  # the fifth wrong one


def test_junk_names_count_only_on_the_address_and_zero_turns_a_limit_off(db, clock):
    lk = Lockout(db, POLICY, now=clock)
    wrong(lk, "x" * 200, "10.0.0.7")
    wrong(lk, "Robert'); DROP TABLE", "10.0.0.7")
    assert [(e.kind, e.key) for e in lk.entries()] == [(ADDRESS, "10.0.0.7")]
    off = Lockout(db, Policy(max_failures=0, address_max_failures=0), now=clock)
    assert all(wrong(off, "jisoo") is None for _ in range(50))


def test_unlock_lifts_and_forgets(db, clock):
    lk = Lockout(db, POLICY, now=clock)
    for _ in range(3):
        wrong(lk, "minji")
    assert lk.attempt("minji", "10.0.0.7").kind == ACCOUNT
    assert lk.unlock(ACCOUNT, "minji") is True
    assert lk.attempt("minji", "10.0.0.7") is None
    lk.succeeded("minji", "10.0.0.7")
    assert lk.unlock(ACCOUNT, "nobody") is False
    assert [(e.kind, e.key, e.failures) for e in lk.entries()] == [(ADDRESS, "10.0.0.7", 3)]
    assert lk.unlock(ADDRESS, "::ffff:10.0.0.7") is True  # as an IPv4-mapped address too
    assert lk.entries() == []


def request(peer: str, **headers: str):
    return SimpleNamespace(remote_ip=headers.get("X-Real-Ip", peer), headers=headers,
                           connection=SimpleNamespace(context=SimpleNamespace(
                               _orig_remote_ip=peer)))


def test_the_client_address_is_the_one_the_proxy_saw_and_cannot_be_made_up():
    # through configurable-http-proxy (loopback or the hub's own address): its last entry
    assert client_address(request("127.0.0.1", **{"X-Forwarded-For": "192.168.0.23"})) == \
        "192.168.0.23"
    assert client_address(request("172.31.0.1", **{"X-Forwarded-For": "::ffff:192.168.0.23"}),
                          ["172.31.0.1"]) == "192.168.0.23"
    # what a client writes itself comes before the proxy's entry, and X-Real-Ip is ignored
    spoofed = request("127.0.0.1", **{"X-Forwarded-For": "1.2.3.4, 192.168.0.23",
                                      "X-Real-Ip": "5.6.7.8"})
    assert client_address(spoofed) == "192.168.0.23"
    # straight to the hub's port (a learner's container): its own address, whatever it says
    direct = request("172.31.0.5", **{"X-Forwarded-For": "1.2.3.4", "X-Real-Ip": "5.6.7.8"})
    assert client_address(direct, ["172.31.0.1"]) == "172.31.0.5"
    assert client_address(request("127.0.0.1")) == "127.0.0.1"


def test_lockout_settings_are_validated_and_reach_the_authenticator(tmp_path):
    env = {"ONELAB_STATE_DIR": str(tmp_path), "ONELAB_AUTH__LOCKOUT__MAX_FAILURES": "4",
           "ONELAB_AUTH__LOCKOUT__LOCK_TIME": "120"}
    c = Config()
    configure_auth(c, load(path=None, environ=env))
    a = c.LocalAccountsAuthenticator
    assert (a.max_failures, a.address_max_failures, a.failure_window, a.lock_seconds,
            a.max_lock_seconds) == (4, 20, 900, 120, 3600)
    with pytest.raises(SettingsError, match=r"auth\.lockout\.max_lock_time = 60 .*at least"):
        load(path=None, environ={"ONELAB_AUTH__LOCKOUT__MAX_LOCK_TIME": "60"})
    with pytest.raises(SettingsError, match=r"auth\.lockout\.max_failures"):
        load(path=None, environ={"ONELAB_AUTH__LOCKOUT__MAX_FAILURES": "-1"})


# -- the authenticator: what the login form gets ------------------------------------------------

def authenticator(db: str, lang: str = "ko") -> LocalAccountsAuthenticator:
    return LocalAccountsAuthenticator(db_url=db, max_failures=3, address_max_failures=50,
                                      failure_window=600, lock_seconds=300,
                                      max_lock_seconds=1200)


def handler(lang: str = "ko", address: str = "192.168.0.23"):
    return SimpleNamespace(
        hub=SimpleNamespace(ip="172.31.0.1"),
        settings={"template_vars": {i18n.TEMPLATE_VAR: lambda user: lang}},
        request=request("127.0.0.1", **{"X-Forwarded-For": address}))


def login(auth, name: str, password: str, lang: str = "ko"):
    return asyncio.run(auth.authenticate(handler(lang), {"username": name, "password": password}))


def test_a_locked_account_refuses_the_right_password_even_after_a_hub_restart(db):
    Accounts(db).add("minji", "right-password")
    auth = authenticator(db)
    assert login(auth, "minji", "wrong-1") is None
    assert login(auth, "minji", "wrong-2") is None
    with pytest.raises(web.HTTPError) as third:
        login(auth, "minji", "wrong-3")
    assert third.value.status_code == 429
    assert "이 계정이" in third.value.jupyterhub_message and "잠겼습니다" in \
        third.value.jupyterhub_message
    assert 0 < int(third.value.headers["Retry-After"]) <= 300

    restarted = authenticator(db)  # a new hub: a new authenticator on the same database
    with pytest.raises(web.HTTPError) as refused:
        login(restarted, "minji", "right-password", lang="en")
    assert refused.value.jupyterhub_message.startswith(
        "Too many failed logins: this account is locked until ")
    assert "(about 5 min)" in refused.value.jupyterhub_message

    assert restarted.lockout.unlock(ACCOUNT, "minji")
    assert login(restarted, "minji", "right-password")["name"] == "minji"
    assert login(restarted, "minji", "wrong-again") is None  # the count started afresh


def test_concurrent_logins_lock_the_address_only_on_wrong_passwords(db):
    """Through the authenticator, all at once on one event loop (scrypt in its executor): a
    dozen right passwords from one address pass and leave it unlocked; wrong ones lock it."""
    accounts = Accounts(db)
    names = [f"s{i:02d}" for i in range(12)]
    for name in names:
        accounts.add(name, f"password-{name}")
    auth = LocalAccountsAuthenticator(db_url=db, max_failures=3, address_max_failures=5,
                                      failure_window=600, lock_seconds=300,
                                      max_lock_seconds=1200)

    async def together(password_of):
        async def one(name):
            try:
                return await auth.authenticate(
                    handler("en"), {"username": name, "password": password_of(name)})
            except web.HTTPError as e:
                return e
        return await asyncio.gather(*(one(n) for n in names))

    good = asyncio.run(together(lambda n: f"password-{n}"))
    assert [r["name"] for r in good] == names
    assert auth.lockout.entries() == []
    bad = asyncio.run(together(lambda n: "not-the-password"))
    assert sum(r is None for r in bad) >= 4  # no more than the checks in flight slip past
    assert any(isinstance(r, web.HTTPError) and r.status_code == 429 for r in bad)
    assert [(e.kind, e.key) for e in auth.lockout.entries() if e.locks] == [
        (ADDRESS, "192.168.0.23")]
    with pytest.raises(web.HTTPError, match="429"):
        login(auth, names[0], f"password-{names[0]}", lang="en")

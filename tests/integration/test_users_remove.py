"""An operator removes a learner for good: their container stops, their tokens stop working at
the hub and at the exchange, their password no longer logs in, the hub forgets them, and their
home is kept aside under a dated name, so a new learner with the same name starts empty.
Real Docker Engine, real hub, through the real CLI."""

from __future__ import annotations

import re
import time
import uuid
from types import SimpleNamespace

import pytest
import requests

from onelab import dockerdoor
from onelab.hubclient import Hub

pytestmark = pytest.mark.integration

NOTE = "김 학생의 실험 노트 — 지워지면 안 됨"


def peek(platform, volume: str, path: str) -> str:
    """`stat` and contents of a file in a volume, read by a throwaway no-network container
    (a newline after the contents: Docker's log may drop an unfinished last line)."""
    from images.table import learner_image

    script = f"stat -c %u:%g:%a /v/{path} && cat /v/{path}; echo"
    out = dockerdoor.client().containers.run(
        learner_image(platform.settings()), ["sh", "-c", script], entrypoint=[], remove=True, network_mode="none", user="1000:1000", read_only=True,
        volumes={volume: {"bind": "/v", "mode": "ro"}}, name=f"{platform.prefix}-peek-"
        f"{uuid.uuid4().hex[:6]}")
    return out.decode().removesuffix("\n")


def server_token(platform, name: str) -> str:
    env = dict(e.split("=", 1) for e in platform.container(name).attrs["Config"]["Env"])
    return env["JUPYTERHUB_API_TOKEN"]


def learner_containers(platform, name: str) -> list:
    return dockerdoor.containers("learner", **{"onelab.user": name,
                                               "onelab.instance": f"{platform.prefix}-learner"})


@pytest.fixture(scope="module")
def removed(platform):
    """kim logs in, starts a server, writes a file in their home and gets a token; their token
    and their server's reach the hub and the exchange as kim. Then an operator removes kim."""
    name = "kim"
    password = platform.add_learner(name)
    hub = platform.login(name)
    hub.start(name)
    hub.wait_ready(name)
    token = hub.token_for(name)
    srv_token = server_token(platform, name)
    kernel = hub.server(name, token).start_kernel()
    res = kernel.execute(f"import os\nopen('/home/learner/notes.txt', 'w').write({NOTE!r})\n"
                         "os.chmod('/home/learner/notes.txt', 0o600)")
    assert res.ok, res.error
    kernel.shutdown()
    for t in (token, srv_token):
        auth = {"Authorization": f"token {t}"}
        assert requests.get(API.format(platform.url), headers=auth, timeout=30
                            ).json()["name"] == name
        r = requests.get(EXCHANGE.format(platform.url), headers=auth, timeout=30)
        assert r.status_code == 200 and r.json()["user"] == name
    assert hub.http.get(API.format(platform.url), timeout=30).status_code == 200

    home = f"{platform.prefix}-home-{name}"
    out = platform.cli("users", "remove", name).stdout
    kept = re.search(rf"({re.escape(home)}\.removed-\d{{8}}T\d{{6}}Z)", out)
    assert kept, out
    return SimpleNamespace(name=name, password=password, session=hub, tokens=(token, srv_token),
                           out=out, home=home, kept=kept.group(1))


API = "{}hub/api/user"
EXCHANGE = "{}services/onelab-exchange/api/courses"


def test_removed_learner_loses_every_way_in(platform, removed):
    name = removed.name
    assert f"removed {name}; home kept as {removed.kept}" in removed.out
    assert "API token(s) revoked" in removed.out and f"local account {name} removed" in removed.out
    # the container is gone
    assert learner_containers(platform, name) == []
    # their token and their server's get 403 from the hub, and so does their login session
    for t in removed.tokens:
        r = requests.get(API.format(platform.url), headers={"Authorization": f"token {t}"},
                         timeout=30)
        assert r.status_code == 403, r.text[:200]
    assert removed.session.http.get(API.format(platform.url), timeout=30).status_code == 403
    # (how the exchange refuses a token the hub does not know; see the test below)
    r = requests.get(EXCHANGE.format(platform.url), headers={"Authorization": "token bogus"},
                     timeout=30, allow_redirects=False)
    assert r.status_code == 403
    r = removed.session.http.get(f"{platform.url}user/{name}/api/contents/notes.txt",
                                 timeout=30, allow_redirects=False)
    assert r.status_code != 200 and NOTE not in r.text
    # the password no longer logs in; the hub no longer lists them
    assert not Hub(platform.url).login(name, removed.password)
    admin = platform.admin()
    assert name not in [u["name"] for u in admin.users()]
    assert admin.user(name) is None


def test_their_home_is_kept_under_a_dated_name_with_every_file(platform, removed):
    assert not dockerdoor.volume_exists(removed.home)
    assert peek(platform, removed.kept, "notes.txt") == f"1000:1000:600\n{NOTE}"
    labels = dockerdoor.client().volumes.get(removed.kept).attrs["Labels"]
    assert labels["onelab.user"] == removed.name and labels["onelab.kept-from"] == removed.home
    assert labels["onelab.role"] == "home-kept" and labels["onelab.removed"].endswith("+00:00")
    assert "copy verified" in removed.out


def test_their_old_tokens_no_longer_reach_the_exchange(platform, removed):
    # the exchange asks the hub about a token again after 5 s (hub/exchange_service.py)
    time.sleep(6)
    for t in removed.tokens:
        r = requests.get(EXCHANGE.format(platform.url), headers={"Authorization": f"token {t}"},
                         timeout=30, allow_redirects=False)
        assert r.status_code == 403, (r.status_code, r.text[:200])


def test_the_same_name_again_starts_empty_and_gets_the_old_home_only_on_request(platform,
                                                                                 removed):
    name, home, kept = removed.name, removed.home, removed.kept
    out = platform.cli("users", "add", name, "--password", "second-kim-pass").stdout
    assert f"note: an earlier home of {name} is kept as volume {kept}" in out
    assert f"onelab users restore-home {name} {kept}" in out
    platform.passwords[name] = "second-kim-pass"
    hub = platform.login(name)
    hub.start(name)
    hub.wait_ready(name)
    kernel = hub.server(name, hub.token_for(name)).start_kernel()
    res = kernel.execute("import os; print(sorted(os.listdir('/home/learner')))")
    assert res.ok, res.error
    assert "notes.txt" not in res.stdout
    assert kernel.execute("open('/home/learner/new.txt', 'w').write('second kim')").ok
    kernel.shutdown()
    for t in removed.tokens:  # the old tokens do not come back with the name
        r = requests.get(API.format(platform.url), headers={"Authorization": f"token {t}"},
                         timeout=30)
        assert r.status_code == 403

    # the operator gives the old home back; the new one is kept aside, not overwritten
    refused = platform.cli("users", "restore-home", name, kept, check=False)
    assert refused.returncode == 2 and "server is running" in refused.stderr
    hub.stop(name)
    out = platform.cli("users", "restore-home", name, kept).stdout
    assert f"restored: {kept} is {name}'s home {home} again" in out
    aside = re.search(rf"kept as volume ({re.escape(home)}\.removed-\S+) ", out).group(1)
    assert peek(platform, home, "notes.txt") == f"1000:1000:600\n{NOTE}"
    assert peek(platform, aside, "new.txt").endswith("second kim")
    assert not dockerdoor.volume_exists(kept)

    # --delete-home deletes it and says exactly what it deleted; other kept homes stay
    out = platform.cli("users", "remove", name, "--delete-home").stdout
    assert f"deleted: volume {home} ({name}'s home, all its files)" in out
    assert f"removed {name}; home deleted" in out
    assert not dockerdoor.volume_exists(home)
    assert dockerdoor.volume_exists(aside)
    assert not Hub(platform.url).login(name, "second-kim-pass")


def test_removal_mistakes_get_one_line(platform):
    def error(*args: str) -> str:
        proc = platform.cli(*args, check=False)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("onelab: "), proc.stderr
        return lines[0]

    assert "no user nobody-here" in error("users", "remove", "nobody-here")
    # the platform's only admin is the first-start `admin`
    assert "admin is the last admin" in error("users", "remove", "admin")
    assert Hub(platform.url).login("admin", (platform.state_dir / "initial-admin-password")
                                   .read_text().strip())
    platform.add_learner("lee")
    assert "is not a kept home of lee; kept: none" in error(
        "users", "restore-home", "lee", f"{platform.prefix}-home-kim")
    # a home left behind by an older OneLab's removal is not handed to a newcomer
    dockerdoor.client().volumes.create(f"{platform.prefix}-home-park")
    line = error("users", "add", "park")
    assert f"home volume {platform.prefix}-home-park of an earlier park" in line
    assert "onelab users remove park" in line
    out = platform.cli("users", "remove", "park").stdout  # keeps it aside, then add works
    assert "home kept" in out
    assert "note: an earlier home of park" in platform.cli("users", "add", "park").stdout

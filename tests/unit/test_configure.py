"""Settings become the JupyterHub configuration an operator expects (plain Config objects)."""

import json

import pytest
from traitlets.config import Config

from hub.auth import LocalAccountsAuthenticator, configure_auth
from hub.configure import configure_hub, configure_proxy
from hub.services import configure_services
from hub.spawner import LearnerSpawner, configure_spawner
from onelab.errors import SettingsError
from onelab.settings import load


@pytest.fixture
def settings(tmp_path):
    return load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path)})


def test_spawner_locks_down_each_learner(settings):
    c = Config()
    configure_spawner(c, settings)
    d = c.DockerSpawner
    assert d.image.startswith("onelab/learner:")
    # the container goes on stop (LearnerSpawner.stop), but not by Docker's auto-remove, which
    # would take its OOM-killed state along before the hub reads it
    assert d.pull_policy == "never" and d.remove is False
    assert c.JupyterHub.spawner_class is LearnerSpawner and not LearnerSpawner().will_resume
    assert d.volumes["onelab-home-{username}"] == "/home/learner"
    assert d.volumes["onelab-datasets"] == {"bind": "/home/learner/datasets", "mode": "ro"}
    assert d.mem_limit == "2G" and d.cpu_limit == 1.0
    hc = d.extra_host_config
    assert hc["pids_limit"] == 512 and hc["cap_drop"] == ["ALL"]
    assert hc["security_opt"] == ["no-new-privileges"] and hc["read_only"] is True
    assert "device_requests" not in hc
    assert d.extra_create_kwargs["user"] == "1000:1000"
    assert d.extra_create_kwargs["labels"]["onelab.user"] == "{raw_username}"
    assert d.extra_create_kwargs["labels"]["onelab.role"] == "learner"
    assert not any("docker.sock" in str(v) for v in d.volumes)


def test_an_oom_kill_outlives_the_stopped_servers_spawner():
    """JupyterHub makes a new Spawner for the start after a stop: the kill's time goes with the
    server's saved state, so the new server can still say why it was started again."""
    old = LearnerSpawner(object_name="onelab-sora")
    old.died_of, old.died_at = "oom", 1_700_000_000.0
    old.clear_state()  # what User.stop does after the stop
    saved = old.get_state()
    assert saved["died"] == ["oom", 1_700_000_000.0]
    new = LearnerSpawner(object_name="onelab-sora")
    new.load_state(saved)
    assert (new.died_of, new.died_at) == ("oom", 1_700_000_000.0)
    new.died_at = 0.0  # start() clears it once the environment holds the notice
    assert "died" not in new.get_state()


def test_gpu_setting_requests_devices_and_the_gpu_image(tmp_path):
    s = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path), "ONELAB_SPAWNER__GPUS": "1"})
    c = Config()
    configure_spawner(c, s)
    assert c.DockerSpawner.image.startswith("onelab/learner-gpu:")
    assert c.DockerSpawner.extra_host_config["device_requests"] == [
        {"count": 1, "capabilities": [["gpu"]]}]


def test_hub_survives_restarts_without_touching_learners(settings):
    c = Config()
    configure_hub(c, settings, "172.30.0.1")
    configure_proxy(c, settings)
    assert c.JupyterHub.cleanup_servers is False
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.JupyterHub.hub_bind_url == "http://172.30.0.1:8081"
    token = c.ConfigurableHTTPProxy.auth_token
    configure_proxy(c2 := Config(), settings)
    assert c2.ConfigurableHTTPProxy.auth_token == token  # same secret after a restart
    assert (settings.state_dir / "proxy-auth-token").stat().st_mode & 0o077 == 0


def test_local_auth_by_default(settings):
    c = Config()
    configure_auth(c, settings)
    assert c.JupyterHub.authenticator_class is LocalAccountsAuthenticator
    assert c.LocalAccountsAuthenticator.db_url == settings.db_url


def test_oauth_maps_groups_to_roles(tmp_path):
    env = {"ONELAB_STATE_DIR": str(tmp_path), "ONELAB_AUTH__KIND": "oauth",
           "ONELAB_AUTH__OAUTH__CLIENT_ID": "onelab", "ONELAB_AUTH__OAUTH__CLIENT_SECRET": "s",
           "ONELAB_AUTH__OAUTH__AUTHORIZE_URL": "https://idp.example/auth",
           "ONELAB_AUTH__OAUTH__TOKEN_URL": "https://idp.example/token",
           "ONELAB_AUTH__OAUTH__USERDATA_URL": "https://idp.example/userinfo",
           "ONELAB_AUTH__OAUTH__ALLOWED_GROUPS": "[students, teachers]",
           "ONELAB_AUTH__OAUTH__ADMIN_GROUPS": "[it]",
           "ONELAB_AUTH__OAUTH__GROUP_ROLES": "{instructor: [teachers]}"}
    c = Config()
    configure_auth(c, load(path=None, environ=env))
    g = c.GenericOAuthenticator
    assert c.JupyterHub.authenticator_class == "generic-oauth"
    assert g.allowed_groups == {"students", "teachers"} and g.admin_groups == {"it"}
    assert g.manage_groups is True and g.auth_state_groups_key == "oauth_user.groups"
    assert g.oauth_callback_url == "http://127.0.0.1:8000/hub/oauth_callback"
    (role,) = c.JupyterHub.load_roles
    assert role["name"] == "onelab-instructor" and role["groups"] == ["teachers"]
    assert "access:servers" not in role["scopes"]
    # the identity provider owns groups: courses add no load_groups (JupyterHub refuses both),
    # and formgrader access goes to the spec's staff by name
    from hub.courses import configure_courses, course_specs
    from hub.formgrader import configure_formgraders

    s = load(path=None, environ=env)
    configure_courses(c, s, "172.30.0.1")
    configure_formgraders(c, s, course_specs(s), {x.id: 9000 + i for i, x in
                                                  enumerate(course_specs(s))})
    assert not c.JupyterHub.get("load_groups")
    staff = [r for r in c.JupyterHub.load_roles if r["name"].endswith("-staff")]
    assert staff and all("users" in r and "groups" not in r for r in staff)


def test_oauth_without_client_is_a_clear_error(tmp_path):
    s = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path), "ONELAB_AUTH__KIND": "oauth"})
    with pytest.raises(SettingsError, match="auth.oauth.client_id is empty"):
        configure_auth(Config(), s)


def test_services_culler_and_admin_token(settings):
    c = Config()
    configure_services(c, settings)
    names = {s["name"] for s in c.JupyterHub.services}
    assert names == {"onelab-admin", "idle-culler"}
    culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    assert "--timeout=3600" in culler["command"]
    admin = next(r for r in c.JupyterHub.load_roles if r["name"] == "admin")
    assert admin["services"] == ["onelab-admin"]
    off = load(path=None, environ={"ONELAB_STATE_DIR": str(settings.state_dir),
                                   "ONELAB_CULLER__ENABLED": "false"})
    c2 = Config()
    configure_services(c2, off)
    assert {s["name"] for s in c2.JupyterHub.services} == {"onelab-admin"}


def test_courses_become_groups_and_learners_reach_only_the_exchange(tmp_path, monkeypatch):
    from hub.courses import EXCHANGE_SERVICE, configure_courses
    from hub.exchange_service import Courses
    from hub.formgrader import configure_formgraders
    from onelab.course import load_courses
    from tests.courses import minicourse

    courses = minicourse.write(tmp_path / "courses")
    spec = courses / minicourse.COURSE / "course.yml"
    spec.write_text(spec.read_text().replace("instructors: [instructor]",
                                             "instructors: [teacher]\nassistants: [tom]\n"
                                             "learners: [amy, ben]"), encoding="utf-8")
    s = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path / "state"),
                                 "ONELAB_COURSES_DIR": str(courses),
                                 "ONELAB_GRADING__MEMORY": "3G"})
    monkeypatch.setenv("ONELAB_GRADING__MEMORY", "3G")  # the operator's setting, in the hub
    c = Config()
    configure_spawner(c, s)
    configure_courses(c, s, "172.30.0.1")
    configure_formgraders(c, s, load_courses(courses), {"mini": 8123})
    fg = next(x for x in c.JupyterHub.services if x["name"] == "formgrader-mini")
    # the hub runs the manager that confines the formgrader in a container; the manager
    # reads the settings, the container gets none
    assert fg["command"][-3:] == ["-m", "hub.formgrader", "mini"]
    assert fg["environment"]["ONELAB_GRADING__MEMORY"] == "3G"
    assert fg["url"].startswith("http://127.0.0.1:")  # loopback: no container reaches it
    assert fg["timeout"] >= 120  # the hub waits for the container, not JupyterHub's 30 s
    # the autograde button's notebooks run with the hub's limits, never the service's choice
    exchange = next(x for x in c.JupyterHub.services if x["name"] == EXCHANGE_SERVICE)
    sandboxes = json.loads(exchange["environment"]["EXCHANGE_GRADING"])
    assert sandboxes["mini"]["limits"]["memory"] == "3G" and sandboxes["mini"]["image"]
    formgraders = next(r for r in c.JupyterHub.load_roles if r["name"] == "onelab-formgraders")
    assert formgraders["services"] == ["formgrader-mini"]
    assert formgraders["scopes"] == [f"access:services!service={EXCHANGE_SERVICE}"]
    assert c.JupyterHub.load_groups["mini-learners"]["users"] == ["amy", "ben"]
    assert c.JupyterHub.load_groups["mini-staff"]["users"] == ["teacher", "tom"]
    staff = next(r for r in c.JupyterHub.load_roles if r["name"] == "mini-staff")
    assert staff["users"] == ["teacher", "tom"]
    assert staff["scopes"] == ["access:services!service=formgrader-mini"]
    svc = next(x for x in c.JupyterHub.services if x["name"] == EXCHANGE_SERVICE)
    assert svc["url"] == f"http://172.30.0.1:{s.hub.exchange_port}"
    assert svc["environment"]["EXCHANGE_ROOT"] == str(tmp_path / "state" / "exchange")
    assert c.DockerSpawner.environment["ONELAB_EXCHANGE_URL"].endswith(
        f"/services/{EXCHANGE_SERVICE}/")
    assert c.DockerSpawner.environment["ONELAB_ROLE"] == "learner"  # kept
    # a learner's server token may call the exchange, and gains nothing else
    assert set(c.Spawner.server_token_scopes) == {
        "users:activity!user", "access:servers!server",
        f"access:services!service={EXCHANGE_SERVICE}"}
    members = Courses(load_courses(courses))
    assert (members.role("mini", "amy"), members.role("mini", "tom"),
            members.role("mini", "carl"), members.role("nope", "amy")) == (
        "learner", "staff", None, None)


def test_a_server_that_keeps_dying_is_left_stopped(monkeypatch):
    """Three automatic starts in ten minutes, then no more: a broken image cannot loop."""
    import asyncio
    import time

    from dockerspawner import DockerSpawner

    async def nothing(self, *a, **k):
        return None

    monkeypatch.setattr(DockerSpawner, "remove_object", nothing)
    started = []

    async def start_again(self):
        started.append(time.time())

    monkeypatch.setattr(LearnerSpawner, "_start_again", start_again)
    sp = LearnerSpawner(object_name="onelab-sora", restart_token="t", restart_delay=0.0)
    sp.user = type("U", (), {"name": "sora"})()

    async def die_and_stop():
        sp.died_of, sp.died_at = "stopped", time.time()
        await sp.run_post_stop_hook()  # JupyterHub's User.stop, for a server that died
        await asyncio.sleep(0.05)

    asyncio.run(sp.run_post_stop_hook())  # a stop the hub asked for (culler, learner): no start
    assert started == []
    for _ in range(5):
        asyncio.run(die_and_stop())
    assert len(started) == 3 and len(sp.restarts) == 3
    sp.restarts = [t - 601 for t in sp.restarts]  # ten minutes later it may try again
    asyncio.run(die_and_stop())
    assert len(started) == 4

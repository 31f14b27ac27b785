"""Operators get validated settings: layered file < env, and one clear line when wrong."""

from pathlib import Path

import pytest

from onelab.errors import SettingsError
from onelab.settings import Settings, load, reference


def test_defaults_are_embedded_and_valid():
    s = load(path=None, environ={})
    assert s.public_url == "http://127.0.0.1:8000/"
    assert s.db_url == "sqlite:////var/lib/onelab/jupyterhub.sqlite"
    assert s.auth.kind == "local"
    assert s.culler.enabled is True
    assert s.spawner.network_internal is True


def test_env_overrides_file(tmp_path: Path):
    f = tmp_path / "onelab.yaml"
    f.write_text("hub:\n  port: 9000\n  admin_users: [kim]\nspawner:\n  mem_limit: 1g\n")
    s = load(path=f, environ={"ONELAB_HUB__PORT": "9100", "ONELAB_SPAWNER__CPU_LIMIT": "2"})
    assert s.hub.port == 9100
    assert s.hub.admin_users == ["kim"]
    assert s.spawner.mem_limit == "1G"
    assert s.spawner.cpu_limit == 2.0


def test_config_file_from_env_var(tmp_path: Path):
    f = tmp_path / "x.yaml"
    f.write_text("state_dir: /srv/onelab\n")
    assert load(environ={"ONELAB_CONFIG": str(f)}).state_dir == Path("/srv/onelab")
    with pytest.raises(SettingsError, match="ONELAB_CONFIG=.*no such file"):
        load(environ={"ONELAB_CONFIG": str(tmp_path / "missing.yaml")})


@pytest.mark.parametrize(
    "yaml_text, env, expected",
    [
        ("spawner:\n  mem_limt: 2G\n", {}, r"unknown setting 'spawner.mem_limt' \(from .*onelab.yaml\); "
         r"allowed here: .*mem_limit"),
        ("spawner:\n  mem_limit: 2 gigs\n", {}, r"bad setting spawner.mem_limit = '2 gigs' .*512M or 2G"),
        ("", {"ONELAB_HUB__PORT": "eighty"}, r"bad setting hub.port = 'eighty' \(from environment "
         r"ONELAB_HUB__PORT\)"),
        ("", {"ONELAB_SPAWNR__IMAGE": "x"}, r"unknown setting 'spawnr'.*allowed here: state_dir, courses_dir, hub"),
        ("spawner:\n  home_volume: shared-home\n", {}, r"must contain \{username\}"),
        ("auth:\n  kind: ldap\n", {}, r"bad setting auth.kind = 'ldap'.*'local' or 'oauth'"),
        ("hub: [1, 2\n", {}, r"onelab.yaml line \d+: not valid YAML"),
        ("- just\n- a list\n", {}, r"must be a mapping of settings"),
        ("grading:\n  gpus: device=0,a\n", {}, r"bad setting grading.gpus = 'device=0,a'.*device=0"),
    ],
)
def test_bad_settings_give_one_line_naming_the_key(tmp_path, yaml_text, env, expected):
    f = tmp_path / "onelab.yaml"
    f.write_text(yaml_text)
    with pytest.raises(SettingsError, match=expected) as info:
        load(path=f, environ=env)
    assert "\n" not in str(info.value)


def test_reference_documents_every_setting():
    ref = reference()
    for key in ("spawner.mem_limit", "hub.db_url", "auth.oauth.allowed_groups", "culler.timeout",
                "images.base_source"):
        assert f"`{key}`" in ref
    assert Settings.model_fields  # the reference is generated, so it cannot drift


def test_docs_settings_reference_is_current():
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
    assert doc.read_text().strip() == reference().strip(), (
        "docs/settings.md is stale: run `.venv/bin/onelab settings --reference > docs/settings.md`")

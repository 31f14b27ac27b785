"""`onelab backup` / `onelab restore` without Docker: the archive's manifest and modes, what it
leaves out, a damaged or cut-short archive named before anything is written, and the refusals
(platform running, a state or volume already there) that keep restore from losing anything.
Docker's side (homes, course folders through a helper container) is faked here with real tars;
tests/integration/test_backup.py does it for real."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from hub import backup as bk
from hub.accounts import Accounts
from onelab import dockerdoor
from onelab.settings import load


def _tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid = len(data), 1000, 1000
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _counts(data: bytes) -> dict[str, int]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        members = [m for m in t.getmembers() if m.name != "."]
    return {"entries": len(members), "bytes": sum(m.size for m in members if m.isreg())}


class FakeDocker:
    """Volumes as tars in memory; host folders (course directories) read and written here."""

    def __init__(self) -> None:
        self.volumes: dict[str, bytes] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.running: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("client", "require_image"):
            monkeypatch.setattr(dockerdoor, name, lambda *a, **k: None)
        monkeypatch.setattr(dockerdoor, "volume_names", lambda: sorted(self.volumes))
        monkeypatch.setattr(dockerdoor, "volume_exists", lambda n: n in self.volumes)
        monkeypatch.setattr(dockerdoor, "volume_labels", lambda n: self.labels.get(n, {}))
        monkeypatch.setattr(dockerdoor, "export_tree", self.export_tree)
        monkeypatch.setattr(dockerdoor, "import_tree", self.import_tree)
        monkeypatch.setattr(dockerdoor, "containers", lambda role, **labels: [
            type("C", (), {"name": n, "status": "running"}) for n in self.running
            if role == "learner"])
        monkeypatch.setattr("hub.formgrader.prepare_root", lambda root: root.mkdir(
            parents=True, exist_ok=True))

    def export_tree(self, source, out, image, **kw):
        if source.startswith("/"):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as t:
                t.add(source, arcname=".")
            data = buf.getvalue()
        else:
            data = self.volumes[source]
        out.write(data)
        return _counts(data)

    def import_tree(self, target, inp, image, **kw):
        data = inp.read()
        if target.startswith("/"):
            with tarfile.open(fileobj=io.BytesIO(data)) as t:
                t.extractall(target, filter="data")
        else:
            assert target not in self.volumes
            self.volumes[target] = data
            self.labels[target] = kw.get("labels") or {}
        return {**_counts(data), "refused": 0}


@pytest.fixture
def docker(monkeypatch):
    fake = FakeDocker()
    fake.install(monkeypatch)
    return fake


def _settings(root: Path, monkeypatch, name: str = "state"):
    monkeypatch.chdir(root)  # no onelab.yaml here: the settings come from the environment
    env = {"ONELAB_STATE_DIR": str(root / name),
           "ONELAB_SPAWNER__HOME_VOLUME": "t-home-{username}",
           "ONELAB_SPAWNER__DATASETS_VOLUME": "t-datasets",
           "ONELAB_SPAWNER__CONTAINER_PREFIX": "t-learner"}
    for key in [k for k in os.environ if k.startswith("ONELAB_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load(path=None, environ=env)


@pytest.fixture
def platform(tmp_path, monkeypatch, docker):
    """A stopped platform's state: an account, secrets, the exchange with a submission, a
    course with its gradebook, the audit log and what `up` rebuilds; two homes and a kept one."""
    s = _settings(tmp_path, monkeypatch)
    state = s.state_dir
    state.mkdir(mode=0o700)
    Accounts(s.db_url).add("minji", "minji-password-1")
    for name in ("jupyterhub_cookie_secret", "proxy-auth-token", "admin-api-token"):
        fd = os.open(state / name, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, f"{name}-value\n".encode())
        os.close(fd)
    sub = state / "exchange" / "c1" / "inbound" / "minji" / "a1" / "20261201T000000+ab"
    sub.mkdir(parents=True)
    (sub / "answer.ipynb").write_text('{"cells": []}')
    (state / "exchange" / "c1" / ".incoming" / "half").mkdir(parents=True)
    (state / "exchange" / ".uploads").mkdir()
    (state / "exchange" / ".uploads" / "body").write_bytes(b"x" * 10)
    (state / "courses" / "c1").mkdir(parents=True)
    (state / "courses" / "c1" / "gradebook.db").write_bytes(b"gradebook")
    (state / "logs").mkdir()
    (state / "logs" / "audit.log").write_text('{"action": "users.add"}\n')
    (state / "logs" / "hub.log").write_text("noise\n")
    (state / "supervisor").mkdir()
    (state / "runtime.json").write_text("{}")
    (state / "jupyterhub.pid").write_text("1\n")
    docker.volumes["t-home-minji"] = _tar_of({"./notes.txt": "안녕 backup".encode()})
    docker.volumes["t-home-old.removed-20261130T010203Z"] = _tar_of({"./x": b"kept"})
    docker.labels["t-home-old.removed-20261130T010203Z"] = {"onelab.role": "home-kept"}
    docker.volumes["someone-elses"] = _tar_of({"./y": b"not ours"})
    return s


def test_the_archive_holds_everything_checksummed_private_and_nothing_volatile(platform, tmp_path):
    dest = bk.backup(platform, tmp_path / "out" / "b.tar", say=lambda *a, **k: None)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    manifest = bk.verify(dest)
    assert manifest["onelab_version"] and manifest["learner_image"].startswith("onelab/learner:")
    assert manifest["database"] == "sqlite" and manifest["courses"] == ["c1"]
    assert [v["name"] for v in manifest["volumes"]] == [
        "t-home-minji", "t-home-old.removed-20261130T010203Z"]
    with tarfile.open(dest) as t:
        names = set(t.getnames())
        members = {m.name: m for m in t.getmembers()}
        for entry in manifest["members"].values():
            assert len(entry["sha256"]) == 64
        assert stat.S_IMODE(members["state/jupyterhub_cookie_secret"].mode) == 0o600
        assert t.extractfile("state/admin-api-token").read() == b"admin-api-token-value\n"
    assert {"hub/jupyterhub.sqlite", "courses/c1.tar", "volumes/t-home-minji.tar",
            "state/logs/audit.log", "state/exchange/c1/inbound/minji/a1/20261201T000000+ab/"
            "answer.ipynb", "manifest.json"} <= names
    for volatile in ("state/runtime.json", "state/supervisor", "state/jupyterhub.pid",
                     "state/logs/hub.log", "state/exchange/.uploads/body",
                     "state/exchange/c1/.incoming", "state/jupyterhub.sqlite",
                     "state/courses", "volumes/someone-elses.tar"):
        assert volatile not in names


def test_restore_onto_a_fresh_state_brings_back_accounts_secrets_exchange_and_homes(
        platform, tmp_path, monkeypatch, docker):
    dest = bk.backup(platform, tmp_path / "b.tar", say=lambda *a, **k: None)
    homes = dict(docker.volumes)
    docker.volumes.clear()  # a new machine
    fresh = _settings(tmp_path, monkeypatch, "fresh")
    bk.restore(fresh, dest, say=lambda *a, **k: None)
    assert Accounts(fresh.db_url).verify("minji", "minji-password-1") is not None
    secret = fresh.state_dir / "jupyterhub_cookie_secret"
    assert secret.read_text() == "jupyterhub_cookie_secret-value\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.state_dir.stat().st_mode) == 0o700
    assert (fresh.state_dir / "exchange/c1/inbound/minji/a1/20261201T000000+ab/answer.ipynb"
            ).read_text() == '{"cells": []}'
    assert (fresh.state_dir / "courses/c1/gradebook.db").read_bytes() == b"gradebook"
    assert docker.volumes["t-home-minji"] == homes["t-home-minji"]
    assert docker.labels["t-home-old.removed-20261130T010203Z"] == {"onelab.role": "home-kept"}


def _flip(path: Path, member: str) -> None:
    with tarfile.open(path) as t:
        offset = t.getmember(member).offset_data
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_a_damaged_member_is_named_and_nothing_is_written(platform, tmp_path, monkeypatch):
    dest = bk.backup(platform, tmp_path / "b.tar", say=lambda *a, **k: None)
    _flip(dest, "volumes/t-home-minji.tar")
    fresh = _settings(tmp_path, monkeypatch, "fresh")
    with pytest.raises(bk.BackupError, match=r"volumes/t-home-minji\.tar \(checksum differs\)"):
        bk.restore(fresh, dest, say=lambda *a, **k: None)
    assert not fresh.state_dir.exists()


def test_a_cut_short_archive_is_refused(platform, tmp_path, monkeypatch):
    dest = bk.backup(platform, tmp_path / "b.tar", say=lambda *a, **k: None)
    data = dest.read_bytes()
    short = tmp_path / "short.tar"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(bk.BackupError, match="no manifest.json|cut short"):
        bk.verify(short)
    # the manifest kept, a member's bytes gone: the member is named
    with tarfile.open(dest) as t:
        entry = t.getmember("hub/jupyterhub.sqlite")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: entry.offset_data + 100] + data[entry.offset_data + 100 + 512:])
    with pytest.raises(bk.BackupError, match="damaged"):
        bk.verify(cut)
    not_ours = tmp_path / "x.tar"
    not_ours.write_bytes(_tar_of({"hello": b"x"}))
    with pytest.raises(bk.BackupError, match="no manifest.json"):
        bk.verify(not_ours)


def test_restore_refuses_while_the_platform_runs(platform, tmp_path, monkeypatch, docker):
    dest = bk.backup(platform, tmp_path / "b.tar", say=lambda *a, **k: None)
    fresh = _settings(tmp_path, monkeypatch, "fresh")
    docker.running = ["t-learner-minji"]
    with pytest.raises(bk.BackupError, match="platform is running.*t-learner-minji"):
        bk.restore(fresh, dest, say=lambda *a, **k: None)
    assert not fresh.state_dir.exists()


def test_restore_never_overwrites_and_force_moves_aside(platform, tmp_path, monkeypatch, docker):
    dest = bk.backup(platform, tmp_path / "b.tar", say=lambda *a, **k: None)
    Accounts(platform.db_url).add("later", "later-password-1")  # made after the backup
    moved: list[tuple[str, str]] = []

    def copy_volume(src, dst, image, labels):
        docker.volumes[dst] = docker.volumes[src]
        moved.append((src, dst))
        return 1, 1

    monkeypatch.setattr(dockerdoor, "copy_volume", copy_volume)
    monkeypatch.setattr(dockerdoor, "remove_volume", lambda n: docker.volumes.pop(n) and True)
    with pytest.raises(bk.BackupError, match="not restoring over.*state directory.*"
                                             "volume t-home-minji"):
        bk.restore(platform, dest, say=lambda *a, **k: None)
    assert Accounts(platform.db_url).get("later") is not None  # untouched
    bk.restore(platform, dest, force=True, say=lambda *a, **k: None)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("state.before-restore-")]
    assert len(aside) == 1
    assert Accounts(f"sqlite:///{aside[0] / 'jupyterhub.sqlite'}").get("later") is not None
    assert Accounts(platform.db_url).get("later") is None  # the backup's accounts
    assert ("t-home-minji", moved[0][1]) == moved[0] and ".before-restore-" in moved[0][1]


def test_an_audit_line_alone_does_not_make_a_state_directory_taken(platform, tmp_path,
                                                                   monkeypatch, docker):
    dest = bk.backup(platform, tmp_path / "b.tar", say=lambda *a, **k: None)
    docker.volumes.clear()
    fresh = _settings(tmp_path, monkeypatch, "fresh")
    (fresh.state_dir / "logs").mkdir(parents=True)
    (fresh.state_dir / "logs" / "audit.log").write_text('{"action": "restore"}\n')
    bk.restore(fresh, dest, say=lambda *a, **k: None)
    lines = (fresh.state_dir / "logs" / "audit.log").read_text().splitlines()
    assert [json.loads(x)["action"] for x in lines] == ["users.add", "restore"]


def test_a_settings_file_in_force_is_never_overwritten(platform, tmp_path, monkeypatch, docker):
    cfg = tmp_path / "onelab.yaml"
    cfg.write_text("hub:\n  log_level: DEBUG\n")
    monkeypatch.setenv("ONELAB_CONFIG", str(cfg))
    dest = bk.backup(platform, tmp_path / "b.tar", say=lambda *a, **k: None)
    cfg.write_text("hub:\n  log_level: INFO\n")
    docker.volumes.clear()
    bk.restore(_settings(tmp_path, monkeypatch, "fresh"), dest, say=lambda *a, **k: None)
    assert cfg.read_text() == "hub:\n  log_level: INFO\n"
    beside = list(tmp_path.glob("onelab.yaml.restored-*"))
    assert len(beside) == 1 and beside[0].read_text() == "hub:\n  log_level: DEBUG\n"


def test_backup_refuses_to_write_into_the_state_directory_or_over_a_file(platform, tmp_path):
    with pytest.raises(bk.BackupError, match="inside the state directory"):
        bk.backup(platform, platform.state_dir / "b.tar")
    (tmp_path / "there.tar").write_bytes(b"x")
    with pytest.raises(bk.BackupError, match="exists already"):
        bk.backup(platform, tmp_path / "there.tar")


def test_the_default_place_is_beside_the_state_directory(platform):
    dest = bk.default_dest(platform)
    assert dest.parent == platform.state_dir.parent / "state-backups"
    assert dest.name.startswith("onelab-") and dest.suffix == ".tar"


def test_homes_are_found_by_the_home_volume_setting(platform):
    pattern = bk.home_pattern(platform)
    assert pattern.fullmatch("t-home-minji") and pattern.fullmatch("t-home-kim-2e-a")
    assert pattern.fullmatch("t-home-x.removed-20261130T010203Z")
    assert not pattern.fullmatch("t-homework") and not pattern.fullmatch("other-home-x")

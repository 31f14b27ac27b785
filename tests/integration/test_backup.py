"""Backup while the class works, restore onto a fresh machine: a learner's account (same
password), their home (same bytes, owner and mode), their submission in the exchange and its
grade in the gradebook all come back, checked by content. Real Docker Engine, real hub, real
nbgrader, through the real CLI; the first platform's volumes are removed before the restore,
as on a new machine, and the restored platform starts with the same names."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from onelab import dockerdoor
from onelab.course import courses_dir
from onelab.hubclient import Hub
from tests.conftest import Platform, start_platform, stop_platform
from tests.integration.test_course_cycle import ASSIGNMENT, NOTEBOOK, RIGHT, _answer, _tab

pytestmark = pytest.mark.integration

COURSE = "onelab-101"
NOTE = "민지의 실험 노트: 백업에서 돌아와야 함\n".encode() + bytes(range(256))


def _grades(p: Platform) -> dict[tuple[str, str], dict[str, str]]:
    out = p.cli("grades", "export", COURSE, timeout=300).stdout
    return {(r["learner"], r["assignment"]): r for r in csv.DictReader(io.StringIO(out))}


def _submissions(state: Path) -> dict[str, str]:
    inbound = state / "exchange" / COURSE / "inbound" / "minji"
    return {str(f.relative_to(inbound)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(inbound.rglob("*")) if f.is_file()}


def _home_file(server) -> bytes:
    r = server.request("GET", "files/notes.bin")
    assert r.status_code == 200, r.text[:300]
    return r.content


@pytest.fixture
def course_root(docker_ready, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("backup")  # short: supervisord's socket path is limited
    courses = tmp_path / "courses"
    shutil.copytree(courses_dir() / COURSE, courses / COURSE)
    (courses / COURSE / "learners.csv").write_text("username,full_name\nminji,Minji\n")
    return tmp_path, courses


def test_backup_while_running_then_restore_onto_a_fresh_state(course_root):
    root, courses = course_root
    p = start_platform(root, ONELAB_COURSES_DIR=str(courses))
    fresh: Platform | None = None
    try:
        # the class at work: a home file, a submission, a grade
        p.cli("assignment", "release", COURSE, ASSIGNMENT)
        password = p.add_learner("minji")
        hub = p.login("minji")
        hub.start("minji")
        hub.wait_ready("minji")
        server = hub.server("minji", hub.token_for("minji"))
        p.container("minji").exec_run(
            ["python3", "-c", f"open('/home/learner/notes.bin','wb').write({NOTE!r}); "
                              "import os; os.chmod('/home/learner/notes.bin', 0o640)"],
            user="1000:1000")
        assert _home_file(server) == NOTE
        _tab(server, "fetch")
        _answer(server, RIGHT)
        assert any(a["status"] == "submitted" for a in _tab(server, "submit"))
        p.cli("assignment", "collect", COURSE, ASSIGNMENT)
        p.cli("assignment", "grade", COURSE, ASSIGNMENT, timeout=600)
        grades = _grades(p)
        assert float(grades[("minji", ASSIGNMENT)]["score"]) == 5
        submitted = _submissions(p.state_dir)
        assert any(k.endswith(NOTEBOOK) for k in submitted), submitted

        # backup while it all runs: the learner's server keeps its kernel and answers after
        kernel = server.start_kernel()
        kernel.execute("x = 41 + 1")
        dest = root / "backups" / "class.tar"
        out = p.cli("backup", str(dest), timeout=600).stdout
        assert "backup written" in out and stat.S_IMODE(dest.stat().st_mode) == 0o600
        assert kernel.execute("print(x)").stdout.strip() == "42"
        assert _home_file(server) == NOTE
        with tarfile.open(dest) as t:
            names = t.getnames()
        assert f"volumes/{p.prefix}-home-minji.tar" in names and "manifest.json" in names
        refused = p.cli("restore", str(dest), check=False)
        assert refused.returncode == 2 and "platform is running" in refused.stderr
    finally:
        stop_platform(p)  # and its volumes: the restore goes to a machine without them
    assert not dockerdoor.volume_exists(f"{p.prefix}-home-minji")

    state = root / "fresh" / "state"
    state.mkdir(parents=True)  # empty, as on a new machine (the CLI runs from it)
    fresh = Platform(p.prefix, {**p.env, "ONELAB_STATE_DIR": str(state)}, state, p.url,
                     passwords=dict(p.passwords))
    try:
        out = fresh.cli("restore", str(dest), timeout=600).stdout
        assert "every checksum matches" in out and "restored" in out
        assert dockerdoor.volume_exists(f"{p.prefix}-home-minji")
        fresh.cli("up", "--detach", timeout=180)
        hub = Hub(fresh.url)
        assert hub.login("minji", password)  # the password from before the backup
        hub.start("minji")
        hub.wait_ready("minji")
        server = hub.server("minji", hub.token_for("minji"))
        assert _home_file(server) == NOTE
        mode = fresh.container("minji").exec_run(
            ["stat", "-c", "%u:%g:%a", "/home/learner/notes.bin"]).output.decode().strip()
        assert mode == "1000:1000:640"
        assert _submissions(state) == submitted
        assert _grades(fresh) == grades
        listed = _tab(server)
        assert any(a["assignment_id"] == ASSIGNMENT and a["status"] == "submitted"
                   for a in listed), listed
    finally:
        stop_platform(fresh)

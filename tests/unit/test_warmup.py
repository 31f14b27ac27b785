"""Warming a class (hub/warmup.py): who is kept warm and until when, which sessions are due, a
session needs a time zone, and the idle culler's arbiter (hub/culler_config.py) spares a warm
learner until the class ends and no one else."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from hub import culler_config
from hub.warmup import due_sessions, is_warm, keep_warm, let_go
from onelab.course import Course, Session

T = datetime(2026, 12, 8, 0, 0, tzinfo=UTC)  # 09:00 in Seoul


def course(cid: str, *sessions: tuple[str, int]) -> Course:
    return Course.model_validate({
        "id": cid, "title": {"ko": "k", "en": "e"}, "instructors": ["t"], "learners": ["a"],
        "assignments": [{"id": "a1", "title": {"ko": "k", "en": "e"}}],
        "sessions": [{"start": s, "minutes": m} for s, m in sessions]})


def test_keep_let_go_and_the_latest_time_wins(tmp_path):
    path = tmp_path / "class-warm.json"
    assert not is_warm(path, "amy")  # no file: nobody
    later = time.time() + 3600
    keep_warm(path, ["amy", "ben"], later)
    keep_warm(path, ["amy"], later - 1800)  # an earlier end does not shorten it
    assert is_warm(path, "amy") and is_warm(path, "ben")
    assert not is_warm(path, "amy", now=later + 1)  # the class is over
    let_go(path, ["ben"])
    assert is_warm(path, "amy") and not is_warm(path, "ben")
    path.write_text("{not json")
    assert not is_warm(path, "amy")  # a broken file means nobody, never an error
    keep_warm(path, ["cho"], later)
    assert json.loads(path.read_text()) == {"cho": later}
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_session_is_due_from_warm_before_until_its_end():
    c = course("ai", ("2026-12-08T09:00:00+09:00", 90))
    assert due_sessions([c], T - timedelta(minutes=11), before=600) == []
    assert [s.minutes for _, s in due_sessions([c], T - timedelta(minutes=10), 600)] == [90]
    assert due_sessions([c], T + timedelta(minutes=89), 600) != []
    assert due_sessions([c], T + timedelta(minutes=90), 600) == []


def test_a_session_without_a_time_zone_is_refused():
    with pytest.raises(ValidationError, match="needs a time zone"):
        Session.model_validate({"start": "2026-12-08T09:00:00", "minutes": 90})
    with pytest.raises(ValidationError):
        Session.model_validate({"start": "2026-12-08T09:00:00+09:00", "minutes": 0})


def test_the_culler_spares_a_warm_learner_until_the_class_ends(tmp_path, monkeypatch):
    path = tmp_path / "class-warm.json"
    keep_warm(path, ["amy"], time.time() + 600)
    monkeypatch.setenv("ONELAB_WARM_FILE", str(path))
    idle = timedelta(hours=2)
    amy, ben = {"url": "/user/amy/"}, {"url": "/base/user/ben/"}
    assert culler_config.onelab_cull_arbiter(idle, 3600, amy) is False
    assert culler_config.onelab_cull_arbiter(idle, 3600, ben) is True
    assert culler_config.onelab_cull_arbiter(timedelta(minutes=5), 3600, ben) is False
    assert not culler_config.kept_warm(amy, str(path), now=time.time() + 601)
    monkeypatch.setenv("ONELAB_WARM_FILE", str(tmp_path / "missing.json"))
    assert culler_config.onelab_cull_arbiter(idle, 3600, amy) is True


def test_the_culler_loads_its_config_file():
    from jupyterhub_idle_culler import IdleCuller

    app = IdleCuller()
    app.load_config_file(str(culler_config.__file__))
    assert app.cull_arbiter_hook.__name__ == "onelab_cull_arbiter"

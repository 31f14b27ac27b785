"""What the learner's server says when memory ended their work (images/learner/onelab/
onelab_notices.py), read from the cgroup files and the hub's notice, in both languages."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "learner" / "onelab"))
import onelab_notices


@pytest.mark.parametrize("name, text, kills", [
    ("memory.events", "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n", 2),  # cgroup v2
    ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n", 5),  # v1
    ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n", None),  # an old kernel
])
def test_oom_kills_from_either_cgroup_version(tmp_path, name, text, kills):
    f = tmp_path / name
    f.write_text(text)
    assert onelab_notices.oom_kills((tmp_path / "missing", f)) == kills


def test_no_cgroup_file_means_not_known(tmp_path):
    assert onelab_notices.oom_kills((tmp_path / "a", tmp_path / "b")) is None


@pytest.mark.parametrize("env, words", [
    ({"MEM_LIMIT": str(2 * 2**30)}, "2 GiB"), ({"MEM_LIMIT": str(1536 * 2**20)}, "1.5 GiB"),
    ({"MEM_LIMIT": str(512 * 2**20)}, "512 MiB"), ({}, "?"), ({"MEM_LIMIT": "lots"}, "?"),
])
def test_memory_limit_in_words(env, words):
    assert onelab_notices.memory_limit(env) == words


def test_the_hubs_oom_notice_in_korean_and_english(monkeypatch):
    import onelab_assignments

    # the image's catalogue is the repository's (images/learner/Dockerfile copies it)
    monkeypatch.setattr(onelab_assignments, "LOCALE_DIR",
                        Path(__file__).resolve().parents[2] / "onelab" / "locale")
    monkeypatch.setattr(onelab_assignments, "_CATALOGUES", {})
    env = {"ONELAB_NOTICE": "oom 1764547200", "MEM_LIMIT": str(2 * 2**30)}
    ko, = onelab_notices.notices(env, "ko")
    en, = onelab_notices.notices(env, "en")
    assert ko["id"] == en["id"] == "oom-1764547200" and ko["kind"] == "server-oom"
    assert "메모리(2 GiB)" in ko["text"] and "저장한 파일은 모두 그대로" in ko["text"]
    assert en["text"].startswith("Your server ran out of memory (2 GiB) at ")
    assert onelab_notices.notices({}, "ko") == []
    assert onelab_notices.notices({"ONELAB_NOTICE": "something else"}, "en") == []


def test_a_server_that_stopped_otherwise_says_so_in_both_languages(monkeypatch):
    import onelab_assignments

    monkeypatch.setattr(onelab_assignments, "LOCALE_DIR",
                        Path(__file__).resolve().parents[2] / "onelab" / "locale")
    monkeypatch.setattr(onelab_assignments, "_CATALOGUES", {})
    env = {"ONELAB_NOTICE": "stopped 1764547200"}
    ko, = onelab_notices.notices(env, "ko")
    en, = onelab_notices.notices(env, "en")
    assert ko["id"] == en["id"] == "stopped-1764547200" and ko["kind"] == "server-stopped"
    assert "예기치 않게 멈춰" in ko["text"] and "{" not in ko["text"]
    assert en["text"].startswith("Your server stopped unexpectedly at ")

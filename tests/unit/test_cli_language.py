"""The `onelab` command speaks Korean or English: ONELAB_LANG, else the locale, else English
(onelab.i18n.cli_language); its help, its output and its errors, with the same meaning."""

from __future__ import annotations

import pytest

from onelab import i18n
from onelab.settings import load
from onelab_cli import main as cli


@pytest.mark.parametrize("environ, lang", [
    ({}, "en"),                                                    # no locale: scripts, logs
    ({"LANG": "C.UTF-8"}, "en"),
    ({"LANG": "POSIX"}, "en"),
    ({"LANG": "fr_FR.UTF-8"}, "en"),
    ({"LANG": "ko_KR.UTF-8"}, "ko"),
    ({"LC_MESSAGES": "ko_KR.UTF-8", "LANG": "en_US.UTF-8"}, "ko"),
    ({"LC_ALL": "C", "LANG": "ko_KR.UTF-8"}, "en"),                # LC_ALL wins, as in POSIX
    ({"LC_ALL": "", "LANG": "ko_KR.UTF-8"}, "ko"),                 # set but empty: not set
    ({"ONELAB_LANG": "ko"}, "ko"),
    ({"ONELAB_LANG": "en", "LANG": "ko_KR.UTF-8"}, "en"),
    ({"ONELAB_LANG": "ko-KR", "LC_ALL": "C"}, "ko"),
    ({"ONELAB_LANG": "fr", "LANG": "ko_KR.UTF-8"}, "ko"),          # not ours: the locale's
])
def test_the_commands_language(environ, lang):
    assert i18n.cli_language(environ) == lang


def test_onelab_lang_is_not_a_setting():
    assert load(path=None, environ={"ONELAB_LANG": "ko"}).hub.port == 8000


def _run(capsys, lang: str, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv), environ={"ONELAB_LANG": lang})
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_in_korean_and_english(capsys):
    code, out, _ = _run(capsys, "ko", "users", "import", "--help")
    assert code == 0
    assert out.startswith("사용법: onelab users import")
    assert "CSV 명단을 추가합니다" in out and "이 도움말을 보여 주고 끝냅니다" in out
    code, out, _ = _run(capsys, "en", "users", "import", "--help")
    assert out.startswith("usage: onelab users import")
    assert "Add a class list from CSV" in out and "write generated passwords to this CSV" in out
    code, out, _ = _run(capsys, "ko", "--help")
    assert "플랫폼(프록시 + 허브)을 시작하고" in out
    code, _, err = _run(capsys, "ko", "users", "nonsense")
    assert code == 2 and "onelab users: 오류: " in err


@pytest.fixture
def no_settings_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("ONELAB_CONFIG", "ONELAB_LANG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONELAB_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def test_output_lines_in_korean_and_english(capsys, monkeypatch, no_settings_file):
    from hub import runtime

    monkeypatch.setattr(runtime, "status", lambda s: {
        "url": "http://127.0.0.1:8000/", "hub": None, "proxy": 41, "healthy": False,
        "processes": [{"name": "supervisord", "pid": 40, "state": "RUNNING"},
                      {"name": "proxy", "pid": 41, "state": "RUNNING"},
                      {"name": "hub", "pid": None, "state": "BACKOFF"}],
        "docker": {"running": True, "pid": 7, "version": "28.2.2"},
        "learners": [("minji", "running")], "image": "onelab/learner:x",
        "firewall": {"enabled": False, "rules": []}})
    code, out, _ = _run(capsys, "en", "status")
    assert code == 1
    assert out.splitlines()[:7] == [
        "url      http://127.0.0.1:8000/  (not answering)",
        "processes",
        "  supervisord              pid 40         RUNNING",
        "  proxy                    pid 41         RUNNING",
        "  hub                      stopped        BACKOFF",
        "Docker   Docker Engine 28.2.2, pid 7",
        "image    onelab/learner:x"]
    assert "firewall off (spawner.host_firewall: false)" in out
    assert "learners 1 container(s)" in out
    code, out, _ = _run(capsys, "ko", "status")
    assert out.splitlines()[:6] == ["주소     http://127.0.0.1:8000/  (응답 없음)",
                                    "프로세스", "  supervisord              pid 40         RUNNING",
                                    "  proxy                    pid 41         RUNNING",
                                    "  hub                      멈춤           BACKOFF",
                                    "Docker   Docker Engine 28.2.2, pid 7"]
    assert "학습자   컨테이너 1개" in out


def test_errors_in_korean_and_english(capsys, monkeypatch, no_settings_file):
    code, _, err = _run(capsys, "ko", "users", "passwd", "nobody", "--password", "long-enough-1")
    assert (code, err) == (2, "onelab: 사용자 nobody이(가) 없습니다\n")
    code, _, err = _run(capsys, "en", "users", "passwd", "nobody", "--password", "long-enough-1")
    assert (code, err) == (2, "onelab: no user nobody\n")
    # a class-list line's own error, inside the line's
    csv = no_settings_file / "class.csv"
    csv.write_text("username\nKim Minji\n")
    code, _, err = _run(capsys, "ko", "users", "import", str(csv))
    assert err.startswith("onelab: 명단 2번째 줄: 사용자 이름 'kim minji'은(는) 쓸 수 없습니다")
    # settings, before any command runs
    monkeypatch.setenv("ONELAB_HUB__PORT", "eighty")
    code, _, err = _run(capsys, "ko", "status")
    assert code == 2 and err.startswith("onelab: 잘못된 설정 hub.port = 'eighty'")
    code, _, err = _run(capsys, "en", "status")
    assert err.startswith("onelab: bad setting hub.port = 'eighty' (from environment "
                          "ONELAB_HUB__PORT)")

"""An operator who gets something wrong is told, in one line, what and what to do."""

import contextlib

import pytest

from onelab.errors import OneLabError
from tests.conftest import cleanup_prefix, onelab, platform_env

pytestmark = pytest.mark.integration


def one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("onelab: ")
    return lines[0]


@pytest.fixture
def env(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    env = platform_env("oltest-err", state)
    yield env
    # a start that failed half way may have made the learner network and its firewall rules
    onelab("down", env=platform_env("oltest-err", state), check=False)
    with contextlib.suppress(OneLabError):  # no Docker daemon answers: nothing was made
        cleanup_prefix("oltest-err")


def test_bad_setting(env, tmp_path):
    env["ONELAB_SPAWNER__MEM_LIMIT"] = "lots"
    line = one_line_error(onelab("up", "--detach", env=env, check=False))
    assert "spawner.mem_limit = 'lots'" in line and "ONELAB_SPAWNER__MEM_LIMIT" in line
    (tmp_path / "onelab.yaml").write_text("spawner:\n  cpu_limt: 2\n")
    del env["ONELAB_SPAWNER__MEM_LIMIT"]
    line = one_line_error(onelab("up", "--detach", env=env, check=False, cwd=tmp_path))
    assert "unknown setting 'spawner.cpu_limt' (from onelab.yaml)" in line


def test_no_docker_daemon(env, tmp_path):
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    line = one_line_error(onelab("up", "--detach", env=env, check=False))
    assert "no Docker daemon answers" in line and "ensure-dockerd.sh" in line


def test_missing_image(env, docker_ready):
    env["ONELAB_SPAWNER__IMAGE"] = "onelab/learner:not-built-here"
    line = one_line_error(onelab("up", "--detach", env=env, check=False))
    assert "onelab/learner:not-built-here is not built" in line
    assert "onelab images build" in line


def test_missing_gpu_image_when_a_course_hands_out_gpus(env, docker_ready, tmp_path):
    config = tmp_path / "gpu.yaml"
    config.write_text("gpu:\n  inventory: [{uuid: GPU-00000000-0000-4000-8000-000000000001}]\n"
                      "  default_policy: exclusive\n  image: onelab/learner-gpu:not-built-here\n")
    env["ONELAB_CONFIG"] = str(config)
    line = one_line_error(onelab("up", "--detach", env=env, check=False))
    assert "GPU learner image onelab/learner-gpu:not-built-here is not built" in line
    assert "onelab images build --gpu" in line


def test_busy_port(env, docker_ready):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", int(env["ONELAB_HUB__PORT"])))
        s.listen()
        line = one_line_error(onelab("up", "--detach", env=env, check=False))
    assert f"port 127.0.0.1:{env['ONELAB_HUB__PORT']} is in use" in line
    assert "hub.port" in line


def test_broken_course_spec(env, tmp_path, docker_ready):
    from tests.courses import minicourse

    courses = minicourse.write(tmp_path / "courses")
    spec = courses / minicourse.COURSE / "course.yml"
    spec.write_text(spec.read_text().replace("    due:", "    deu:"), encoding="utf-8")
    env["ONELAB_COURSES_DIR"] = str(courses)
    line = one_line_error(onelab("up", "--detach", env=env, check=False))
    assert "course.yml line 7: assignments.0.deu: unknown field" in line

"""GPUs handed out by the real hub to real learner containers, on a host without GPUs: a
declared inventory of one GPU and a course whose policy is a whole GPU per learner. The claim
is on the container's label and in its environment (no device request: this engine has no
NVIDIA runtime); a second learner waits in the queue, sees their place on the spawn progress,
and starts on CPU after the wait limit; a stopped server gives its GPU back; a hub killed with
SIGKILL keeps the claims of servers that still run; the spawn form offers the choice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import pytest
import requests

from onelab.course import courses_dir
from tests.conftest import start_platform, stop_platform
from tests.integration.test_faults import learner_container, pid_of, until

pytestmark = pytest.mark.integration

GPU = "GPU-0a1b2c3d-0000-4000-8000-00000000c1a5"
COURSE = "onelab-101"


@pytest.fixture(scope="module")
def plat(docker_ready, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu")
    courses = root / "courses"
    shutil.copytree(courses_dir() / COURSE, courses / COURSE)
    spec = courses / COURSE / "course.yml"
    spec.write_text(spec.read_text().replace("learners_csv: learners.csv",
                                             "learners: [gina, hana]")
                    + "gpu: {policy: exclusive}\n")
    config = root / "onelab.yaml"
    config.write_text(f"gpu:\n  inventory:\n    - {{uuid: {GPU}, model: Test GPU, "
                      "memory_mib: 16384}\n  queue_wait_limit: 12\n")
    p = start_platform(root, ONELAB_COURSES_DIR=str(courses), ONELAB_CONFIG=str(config))
    yield p
    stop_platform(p)


def env_of(container) -> dict[str, str]:
    container.reload()
    return dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])


def held(p) -> list[str]:
    """Who holds the GPU, as `onelab gpu list` shows it to an operator."""
    out = p.cli("gpu", "list").stdout
    assert GPU in out
    return [line.split()[1] for line in out.splitlines()
            if line.startswith("       ") and line.split()[0].isdigit()]


def progress_messages(p, hub, name: str, into: list[str], stop: threading.Event) -> None:
    """Read the spawn progress stream the spawn page reads (server-sent events)."""
    url = f"{p.url}hub/api/users/{name}/server/progress"
    with hub.http.get(url, stream=True, timeout=60,
                      headers={"Accept": "text/event-stream"}) as r:
        for line in r.iter_lines(decode_unicode=True):
            if stop.is_set():
                return
            if line and line.startswith("data:"):
                into.append(json.loads(line[5:]).get("message", ""))


def test_one_gpu_two_learners_the_queue_then_cpu_and_the_claim_given_back(plat):
    plat.add_learner("gina")
    plat.add_learner("hana")
    gina = plat.login("gina")
    gina.start("gina")
    gina.wait_ready("gina")
    c = learner_container(plat, "gina")
    assert c.labels.get("onelab.gpu") == f"{GPU}/0"
    env = env_of(c)
    assert env["NVIDIA_VISIBLE_DEVICES"] == GPU and env["ONELAB_GPU"] == GPU
    assert "DeviceRequests" not in c.attrs["HostConfig"] or not \
        c.attrs["HostConfig"]["DeviceRequests"]  # no NVIDIA runtime here
    assert "gina" in held(plat)
    token = plat.cli("token").stdout.strip().split()[-1]
    metrics = requests.get(f"{plat.url}hub/metrics", timeout=30,
                           headers={"Authorization": f"token {token}"}).text
    assert f'onelab_gpu_claims{{device="{GPU}",model="Test GPU"}} 1.0' in metrics

    # the spawn page offers the choice, in Korean by default
    hana = plat.login("hana")
    page = hana.http.get(f"{plat.url}hub/spawn", timeout=30)
    text = page.content.decode("utf-8")  # the page is UTF-8 (requests guesses Latin-1)
    assert page.status_code == 200 and "서버를 어디에서 실행할까요?" in text
    assert 'value="cpu"' in text and "GPU 한 장 전체" in text

    seen: list[str] = []
    stop = threading.Event()
    hana.start("hana")
    reader = threading.Thread(target=progress_messages, args=(plat, hana, "hana", seen, stop),
                              daemon=True)
    reader.start()
    hana.wait_ready("hana", timeout=120)
    stop.set()
    h = learner_container(plat, "hana")
    assert "onelab.gpu" not in (h.labels or {})
    assert env_of(h).get("ONELAB_GPU", "") == ""
    assert any("1번" in m or "number 1" in m for m in seen), seen  # their place in the queue
    assert any("CPU" in m for m in seen), seen  # and why they run on CPU

    # a hub killed mid-class keeps the claim of a server that still runs
    old = pid_of(plat, "hub")
    os.kill(old, signal.SIGKILL)
    until("a new hub", lambda: pid_of(plat, "hub") != old and requests.get(
        f"{plat.url}hub/health", timeout=3).status_code == 200, timeout=90)
    assert "gina" in held(plat)

    # a stopped server gives its GPU back; the next learner gets it at once
    gina = plat.login("gina")
    gina.stop("gina")
    until("the claim given back", lambda: "gina" not in held(plat),
          timeout=30)
    hana = plat.login("hana")
    hana.stop("hana")
    started = time.monotonic()
    hana.start("hana")
    hana.wait_ready("hana")
    assert learner_container(plat, "hana").labels.get("onelab.gpu") == f"{GPU}/0"
    assert time.monotonic() - started < 60
    assert held(plat) == ["hana"]

"""GPUs handed out by the real hub to real learner containers, on a host without GPUs: a
declared inventory of one GPU and a course whose policy is a whole GPU per learner. The claim
is on the container's label and in its environment (no device request: this engine has no
NVIDIA runtime); a second learner waits in the queue, sees their place on the spawn progress,
and starts on CPU after the wait limit; a stopped server gives its GPU back; a hub killed with
SIGKILL keeps the claims of servers that still run; the spawn form offers the choice; a learner
past the week's GPU-hours starts on CPU and is told so. Three learners starting at the same
moment get one GPU between them, and the real idle culler stopping every server gives it back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from images.table import learner_image, tag
from onelab import dockerdoor
from onelab.course import courses_dir
from onelab.settings import load
from tests.conftest import start_platform, stop_platform
from tests.integration.test_faults import learner_container, pid_of, until

pytestmark = pytest.mark.integration

GPU = "GPU-0a1b2c3d-0000-4000-8000-00000000c1a5"
COURSE = "onelab-101"
GPU_IMAGE = f"onelab-test/learner-gpu-standin:{os.getpid()}"


@pytest.fixture(scope="module")
def plat(docker_ready, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu")
    courses = root / "courses"
    shutil.copytree(courses_dir() / COURSE, courses / COURSE)
    spec = courses / COURSE / "course.yml"
    spec.write_text(spec.read_text().replace("learners_csv: learners.csv",
                                             "learners: [gina, hana, ivy, jun, kai]")
                    + "gpu: {policy: exclusive}\n")
    # The CUDA image is several GB of wheels: here the GPU holders' image is the learner image
    # under another name, so a test can tell which one a server got.
    learner = dockerdoor.client().images.get(tag("learner", load(path=None, environ={})))
    learner.tag(GPU_IMAGE.split(":")[0], GPU_IMAGE.split(":")[1])
    config = root / "onelab.yaml"
    config.write_text(f"gpu:\n  inventory:\n    - {{uuid: {GPU}, model: Test GPU, "
                      "memory_mib: 16384}\n  queue_wait_limit: 12\n"
                      f"  image: {GPU_IMAGE}\n"
                      "  weekly_gpu_hours: 0.004\n")  # 14.4 s a week: gina spends it
    p = start_platform(root, ONELAB_COURSES_DIR=str(courses), ONELAB_CONFIG=str(config))
    yield p
    stop_platform(p)
    dockerdoor.client().images.remove(GPU_IMAGE)  # the name only; the learner image stays


def env_of(container) -> dict[str, str]:
    container.reload()
    return dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])


def held(p) -> list[str]:
    """Who holds the GPU, as `onelab gpu list` shows it to an operator."""
    out = p.cli("gpu", "list").stdout
    assert GPU in out
    return [line.split()[1] for line in out.splitlines()
            if line.startswith("       ") and line.split()[0].isdigit()]


def start_and_listen(p, hub, name: str) -> list[str]:
    """Start `name`'s server and read, while it starts, the progress messages the spawn page
    shows (JupyterHub's server-sent events), until the server is ready."""
    seen: list[str] = []
    starter = threading.Thread(target=hub.start, args=(name,), daemon=True)
    starter.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the stream exists while the start is pending
        server = ((hub.user(name) or {}).get("servers") or {}).get("", {})
        if server.get("pending") == "spawn" or server.get("ready"):
            break
        time.sleep(0.1)
    url = f"{p.url}hub/api/users/{name}/server/progress"
    with hub.http.get(url, stream=True, timeout=120,
                      headers={"Accept": "text/event-stream"}) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                seen.append(event.get("message", ""))
                if event.get("ready"):
                    break
    starter.join(timeout=120)
    hub.wait_ready(name)
    return seen


def test_one_gpu_two_learners_the_queue_then_cpu_and_the_claim_given_back(plat):
    plat.add_learner("gina")
    plat.add_learner("hana")
    gina = plat.login("gina")
    gina.start("gina")
    gina.wait_ready("gina")
    c = learner_container(plat, "gina")
    assert c.labels.get("onelab.gpu") == f"{GPU}/0"
    assert c.attrs["Config"]["Image"] == GPU_IMAGE  # the GPU image (gpu.image)
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

    seen = start_and_listen(plat, hana, "hana")
    h = learner_container(plat, "hana")
    assert "onelab.gpu" not in (h.labels or {})
    assert h.attrs["Config"]["Image"] == learner_image(plat.settings())  # on CPU
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

    # gina has used more than this week's GPU time (14.4 s here): CPU, and the spawn page says why
    hana.stop("hana")
    week = plat.cli("gpu", "usage", "--week").stdout
    gina_row = next(line for line in week.splitlines() if line.startswith("gina "))
    assert "0.00 / 0.004" in gina_row, week  # none left of 0.004 h
    gina = plat.login("gina")
    told = start_and_listen(plat, gina, "gina")
    assert "onelab.gpu" not in (learner_container(plat, "gina").labels or {})
    assert any("이번 주 GPU 사용 시간이 남지 않았습니다" in m for m in told), told


def test_three_learners_at_once_get_one_gpu_and_the_culler_gives_it_back(plat):
    names = ["ivy", "jun", "kai"]
    for name in names:
        plat.add_learner(name)
    hubs = {name: plat.login(name) for name in names}
    at_once = threading.Barrier(len(names))

    def start(name: str) -> None:
        at_once.wait()
        hubs[name].start(name)

    threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for name in names:  # one on the GPU at once, two on CPU after the 12 s wait limit
        hubs[name].wait_ready(name)
    labels = {n: (learner_container(plat, n).labels or {}).get("onelab.gpu") for n in names}
    assert sorted(v for v in labels.values() if v) == [f"{GPU}/0"], labels
    holder = next(n for n, v in labels.items() if v)
    assert held(plat) == [holder]
    for name in names:
        c = learner_container(plat, name)
        gpu = env_of(c).get("ONELAB_GPU", "")
        assert gpu == (GPU if name == holder else ""), (name, gpu)
        assert (c.attrs["Config"]["Image"] == GPU_IMAGE) == (name == holder)

    # The idle culler, as the hub runs it but with a one-second timeout, stops every server;
    # each stop gives its claim back.
    token = plat.cli("token").stdout.strip().split()[-1]
    culler = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=1", "--cull-every=2",
         f"--url={plat.url}hub/api"],
        env={**os.environ, "JUPYTERHUB_API_TOKEN": token},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        admin = plat.admin()
        until("every server culled", lambda: all(
            not (admin.user(n) or {}).get("servers") for n in [*names, "gina", "hana"]),
            timeout=90)
    finally:
        culler.terminate()
        _, err = culler.communicate(timeout=30)
    assert f"Culling server {holder} " in err, err[-2000:]
    for name in names:
        assert learner_container(plat, name) is None or \
            learner_container(plat, name).status != "running"
    assert held(plat) == []
    usage = plat.cli("gpu", "usage").stdout
    assert any(line.startswith(f"{holder} ") for line in usage.splitlines()), usage

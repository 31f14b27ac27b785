"""A learner's day on the real platform: log in, get a PyTorch container, keep their files, and
stay out of everyone else's. Real Docker Engine, real JupyterHub + configurable-http-proxy."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from onelab.hubclient import Hub

pytestmark = pytest.mark.integration


def running_kernel(platform, name):
    """Log `name` in through the form, start their server, open a kernel as them."""
    hub = platform.login(name)
    hub.start(name)
    hub.wait_ready(name)
    token = hub.token_for(name)
    return hub, token, hub.server(name, token).start_kernel()


def test_login_form_accepts_the_right_password_only(platform):
    platform.add_learner("minji", "correct-pass-1")
    assert not Hub(platform.url).login("minji", "wrong-pass-1")
    assert not Hub(platform.url).login("nobody", "correct-pass-1")
    hub = Hub(platform.url)
    assert hub.login("minji", "correct-pass-1")
    me = hub.api("GET", "user")
    assert me["name"] == "minji" and me["admin"] is False


def test_learner_runs_pytorch_as_non_root_in_a_locked_down_container(platform):
    platform.add_learner("jisoo")
    _hub, _token, kernel = running_kernel(platform, "jisoo")
    res = kernel.execute(
        "import os, pwd, torch\n"
        "x = torch.randn(64, 32, requires_grad=True); (x @ x.T).sum().backward()\n"
        "print(os.getuid(), pwd.getpwuid(os.getuid()).pw_name, 'x'.join(map(str, x.grad.shape)),"
        " torch.__version__)"
    )
    assert res.ok, res.error
    uid, user, shape, version = res.stdout.split(maxsplit=3)
    assert (uid, user) == ("1000", "learner")
    assert shape == "64x32"
    assert version.startswith("2.")

    # What the learner's code meets from inside: limits and a read-only system.
    res = kernel.execute(
        "import os\n"
        "def read(p):\n"
        "    try: return open(p).read().strip()\n"
        "    except OSError as e: return 'n/a'\n"
        "print(read('/sys/fs/cgroup/memory/memory.limit_in_bytes') or read('/sys/fs/cgroup/memory.max'))\n"
        "print(read('/sys/fs/cgroup/pids/pids.max') or read('/sys/fs/cgroup/pids.max'))\n"
        "print(os.path.exists('/var/run/docker.sock') or os.path.exists('/run/docker.sock'))\n"
        "try:\n    open('/usr/local/evil', 'w'); print('rootfs-writable')\n"
        "except OSError as e: print('rootfs', e.errno)\n"
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
    )
    assert res.ok, res.error
    mem, pids, sock, rootfs, capeff = res.stdout.split("\n")[:5]
    assert int(mem) == 1024**3
    assert pids == "256"
    assert sock == "False"
    assert rootfs == "rootfs 30"  # EROFS
    assert int(capeff, 16) == 0

    # And what Docker says about the container.
    ctr = platform.container("jisoo")
    hc = ctr.attrs["HostConfig"]
    assert hc["Memory"] == 1024**3 and hc["PidsLimit"] == 256
    assert hc["Privileged"] is False and hc["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in hc["SecurityOpt"] and hc["ReadonlyRootfs"] is True
    assert ctr.attrs["Config"]["User"] == "1000:1000"
    assert not any("docker.sock" in (m.get("Source") or "") for m in ctr.attrs["Mounts"])
    assert ctr.labels["onelab.user"] == "jisoo" and ctr.labels["onelab.role"] == "learner"
    kernel.shutdown()


def test_home_survives_a_server_stop_and_start(platform):
    platform.add_learner("hyun")
    hub, token, kernel = running_kernel(platform, "hyun")
    res = kernel.execute("open('/home/learner/notes.txt', 'w').write('내 실험 노트 v1')")
    assert res.ok, res.error
    first_id = platform.container("hyun").id
    kernel.shutdown()
    hub.stop("hyun")
    hub.start("hyun")
    hub.wait_ready("hyun")
    assert platform.container("hyun").id != first_id  # a fresh container...
    kernel = hub.server("hyun", token).start_kernel()
    res = kernel.execute("print(open('/home/learner/notes.txt').read())")
    assert res.ok, res.error
    assert res.stdout.strip() == "내 실험 노트 v1"  # ...with the same home
    kernel.shutdown()


def test_learners_cannot_reach_each_other(platform):
    platform.add_learner("alice")
    platform.add_learner("bob")
    _, _a_token, a_kernel = running_kernel(platform, "alice")
    b_hub, b_token, b_kernel = running_kernel(platform, "bob")
    assert a_kernel.execute("open('/home/learner/secret.txt','w').write('alice-only-7f3a')").ok

    # Through the proxy, with bob's own token or his login cookie: refused.
    r = requests.get(f"{platform.url}user/alice/api/contents/secret.txt",
                     headers={"Authorization": f"token {b_token}"}, timeout=30)
    assert r.status_code == 403
    r = b_hub.http.get(f"{platform.url}user/alice/api/contents/secret.txt", timeout=30)
    assert "alice-only-7f3a" not in r.text and r.status_code in (302, 403)

    # Straight at alice's container from bob's kernel: no route between learner containers.
    alice_ip = next(iter(platform.container("alice").attrs["NetworkSettings"]["Networks"]
                         .values()))["IPAddress"]
    res = b_kernel.execute(
        "import socket\n"
        "s = socket.socket(); s.settimeout(3)\n"
        f"try:\n    s.connect(('{alice_ip}', 8888)); print('connected')\n"
        "except OSError as e: print('blocked', type(e).__name__)\n"
    )
    assert res.ok, res.error
    assert res.stdout.startswith("blocked")

    # No path to alice's files in bob's file system: only his own home is mounted.
    res = b_kernel.execute(
        "import os, subprocess\n"
        "print(sorted(os.listdir('/home')))\n"
        "print(os.path.exists('/home/learner/secret.txt'))\n"
        "print(open('/proc/self/mountinfo').read().count('alice'))\n"
    )
    assert res.ok, res.error
    assert res.stdout.split("\n")[:3] == ["['learner']", "False", "0"]
    # alice's file is where it should be, untouched
    assert a_kernel.execute("print(open('/home/learner/secret.txt').read())").stdout.strip() \
        == "alice-only-7f3a"
    a_kernel.shutdown()
    b_kernel.shutdown()


def test_hub_restart_keeps_running_servers_and_kernels(platform):
    platform.add_learner("sora")
    _hub, token, kernel = running_kernel(platform, "sora")
    assert kernel.execute("answer = 6 * 7").ok
    container_id = platform.container("sora").id
    hub_pid = int((platform.state_dir / "jupyterhub.pid").read_text())

    os.kill(hub_pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(hub_pid, 0)
            time.sleep(0.2)
        except ProcessLookupError:
            break
    else:
        pytest.fail("hub did not exit on SIGTERM")

    # While the hub is down, the learner's open notebook keeps working through the proxy.
    res = kernel.execute("answer += 1; print(answer)")
    assert res.ok and res.stdout.strip() == "43"

    # supervisord starts the hub again by itself; a later `onelab up` adopts it
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{platform.url}hub/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    else:
        pytest.fail("the hub did not come back by itself")
    assert int((platform.state_dir / "jupyterhub.pid").read_text()) != hub_pid
    assert "adopted" in platform.cli("up", "--detach", timeout=180).stdout
    assert platform.container("sora").id == container_id
    admin = platform.admin()
    assert admin.user("sora")["servers"][""]["ready"] is True
    r = requests.get(f"{platform.url}user/sora/api/status",
                     headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.status_code == 200, r.text[:200]
    res = kernel.execute("print(answer)")  # the very same kernel, state intact
    assert res.ok and res.stdout.strip() == "43"
    kernel.shutdown()


def test_status_lists_running_learners(platform):
    platform.add_learner("yuna")
    hub = platform.login("yuna")
    hub.start("yuna")
    hub.wait_ready("yuna")
    out = platform.cli("status").stdout
    assert "(healthy)" in out
    assert any(line.split() == ["yuna", "running"] for line in out.splitlines())

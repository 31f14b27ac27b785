"""Checks that run inside the learner image, as the learner does."""

import json
import re

import pytest

from images import table
from images.table import learner_image
from onelab import dockerdoor
from onelab.settings import load

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image(docker_ready):
    return learner_image(load(path=None, environ={}))


def run_in(image: str, code: str) -> str:
    out = dockerdoor.client().containers.run(
        image, ["python", "-c", code], remove=True, network_mode="none",
        labels={"onelab.role": "test"})
    return out.decode()


def test_learner_stack_imports_and_versions(image):
    out = json.loads(run_in(image, (
        "import json, os, torch, numpy, pandas, sklearn, matplotlib, nbgrader, jupyterlab, "
        "notebook, ipykernel, papermill\n"
        "from importlib.metadata import version as v\n"
        "print(json.dumps({'uid': os.getuid(), 'torch': torch.__version__, "
        "'cuda_built': torch.version.cuda, 'lab': jupyterlab.__version__, "
        "'notebook': notebook.__version__, 'nbgrader': nbgrader.__version__, "
        "'singleuser': v('jupyterhub'), 'ko': v('jupyterlab-language-pack-ko-kr')}))"
    )))
    assert out["uid"] == 1000
    assert out["torch"].startswith("2.13.0")
    assert out["lab"].startswith("4.") and out["notebook"].startswith("7.")
    assert out["singleuser"] == "6.1.1" and out["ko"].startswith("4.5")
    labels = dockerdoor.client().images.get(image).labels
    assert labels["org.onelab.version.torch"] == table.locked_versions()["torch"] == out["torch"]
    assert labels["org.onelab.version.jupyterlab"] == out["lab"]
    assert labels["org.onelab.variant"] == "cpu"


def test_no_program_changes_who_runs_it(image):
    """No set-uid/set-gid program: a learner cannot become root or another user, also in a
    swarm service, where no-new-privileges cannot be set (docs/swarm.md)."""
    found = run_in(image, (
        "import os, stat\n"
        "for top in ('/usr', '/bin', '/sbin', '/opt', '/etc', '/lib'):\n"
        "    for d, _, files in os.walk(top):\n"
        "        for f in files:\n"
        "            p = os.path.join(d, f)\n"
        "            try: m = os.lstat(p).st_mode\n"
        "            except OSError: continue\n"
        "            if stat.S_ISREG(m) and m & (stat.S_ISUID | stat.S_ISGID): print(p)\n"))
    assert found == ""


def test_installed_packages_are_exactly_the_lock(image):
    """A fresh clone builds the same installed package set as requirements.lock: every package
    name for name and version for version, nothing more (pip itself, the venv's installer, aside)
    and nothing that pip finds broken."""
    out = json.loads(run_in(image, (
        "import json, subprocess, sys, importlib.metadata as md\n"
        "check = subprocess.run([sys.executable, '-m', 'pip', 'check', '--disable-pip-version-"
        "check'], capture_output=True, text=True)\n"
        "print(json.dumps({'dists': [[d.metadata['Name'], d.version] for d in md.distributions()],"
        " 'check': check.returncode, 'check_out': check.stdout + check.stderr}))"
    )))
    installed: dict[str, str] = {}
    for name, version in out["dists"]:
        assert table.normalize(name) not in installed, f"{name} installed twice"
        installed[table.normalize(name)] = version
    locked = table.locked_versions()
    if "pip" not in locked:
        installed.pop("pip")
    missing = sorted(set(locked) - set(installed))
    extra = sorted(set(installed) - set(locked))
    moved = sorted(f"{p} {installed[p]} (lock {locked[p]})" for p in set(locked) & set(installed)
                   if installed[p] != locked[p])
    assert not (missing or extra or moved), f"missing {missing}, extra {extra}, moved {moved}"
    # pip's only complaint may be what docker/lock.sh leaves out on purpose (its LEAN list)
    broken = [line for line in out["check_out"].splitlines()
              if line.strip() and "rfc3987-syntax" not in line and "lark" not in line]
    assert out["check"] == 0 or not broken, out["check_out"]


def test_learners_get_learner_tools(image):
    out = json.loads(run_in(image, (
        "import json, subprocess\n"
        "ext = subprocess.run(['jupyter', 'server', 'extension', 'list'], capture_output=True,"
        " text=True)\n"
        "lab = subprocess.run(['jupyter', 'labextension', 'list'], capture_output=True, text=True)\n"
        "print(json.dumps({'ext': ext.stdout + ext.stderr, 'lab': lab.stdout + lab.stderr}))"
    )))
    ext = re.sub(r"\x1b\[[0-9;]*m", "", out["ext"])
    assert "nbgrader.server_extensions.assignment_list enabled" in ext
    assert "nbgrader.server_extensions.formgrader disabled" in ext
    assert "nbgrader.server_extensions.course_list disabled" in ext
    assert "@jupyter/nbgrader:create-assignment" in out["lab"]  # listed as disabled
    assert "@jupyter/nbgrader:formgrader" in out["lab"]


# Starts the image's Jupyter server once per case ([ONELAB_LANG or None, the learner's own
# Settings > Language choice or None]) and reads JupyterLab's settings API as the page does.
LAB_LANGUAGE = r"""
import json, os, pathlib, subprocess, sys, time, urllib.request
from jupyter_core.paths import jupyter_config_dir

TRANSLATION = "@jupyterlab/translation-extension:plugin"
NOTIFICATION = "@jupyterlab/apputils-extension:notification"
# where Settings > Language keeps the learner's choice (~/.jupyter/lab/user-settings/...)
CHOICE = pathlib.Path(jupyter_config_dir(), "lab/user-settings/@jupyterlab/translation-extension")


def get(name):
    request = urllib.request.Request("http://127.0.0.1:8888/lab/api/settings/" + name,
                                     headers={"Authorization": "token t"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def start(lang, choice):
    env = {k: v for k, v in os.environ.items() if k != "ONELAB_LANG"}
    if lang:
        env["ONELAB_LANG"] = lang
    if choice:
        CHOICE.mkdir(parents=True, exist_ok=True)
        (CHOICE / "plugin.jupyterlab-settings").write_text(json.dumps({"locale": choice}))
    server = subprocess.Popen(
        ["jupyter", "server", "--no-browser", "--port=8888", "--IdentityProvider.token=t"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(120):
            try:
                translation, notification = get(TRANSLATION), get(NOTIFICATION)
                break
            except OSError:
                time.sleep(0.5)
        else:
            server.kill()
            return {"error": server.communicate()[0][-3000:]}
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(20)
        if choice:
            (CHOICE / "plugin.jupyterlab-settings").unlink()
    default = translation["schema"]["properties"]["locale"]["default"]
    return {"default": default,
            # what JupyterLab's page uses: the learner's setting, else the default
            "composite": translation["settings"].get("locale", default),
            "fetchNews": notification["schema"]["properties"]["fetchNews"]["default"]}


print(json.dumps([start(lang, choice) for lang, choice in json.loads(sys.argv[1])]))
"""


def test_jupyterlab_speaks_the_learners_onelab_language(image):
    """JupyterLab's menus follow ONELAB_LANG (the hub's language for this learner), decided at
    each server start, on a read-only root as the learner runs it; the other defaults stay, and
    a language the learner picked in Settings > Language still wins."""
    cases = [["en", None], ["ko", None], [None, None], ["en", "ko_KR"]]
    out = dockerdoor.client().containers.run(
        image, ["python", "-c", LAB_LANGUAGE, json.dumps(cases)], remove=True,
        network_mode="none", read_only=True, user="1000:1000",
        tmpfs={"/tmp": "mode=1777", "/home/learner": "uid=1000,gid=1000"},
        labels={"onelab.role": "test"})
    en, ko, unset, chosen = json.loads(out.decode())
    for result in (en, ko, unset, chosen):
        assert "error" not in result, result.get("error")
        assert result["fetchNews"] == "false"
    assert en["default"] == en["composite"] == "en"
    assert ko["default"] == ko["composite"] == "ko_KR"
    assert unset["composite"] == "ko_KR"  # Korean first
    assert chosen["default"] == "en" and chosen["composite"] == "ko_KR"


def test_hangul_font_for_plots(image):
    out = run_in(image, (
        "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
        "from matplotlib import font_manager as fm\n"
        "print(fm.findfont(fm.FontProperties(family=plt.rcParams['font.family'])))"
    ))
    assert "Nanum" in out


FIRST_KERNEL = r"""
import glob, json, os, subprocess, sys, threading, time, urllib.request
from jupyter_client import BlockingKernelClient

H = {"Authorization": "token t", "Content-Type": "application/json"}
os.makedirs("/home/learner/week1", exist_ok=True)

def api(method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:8888/api/" + path, method=method, headers=H,
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")

PROBE = ("import json, os, sys; print(json.dumps({'torch': 'torch' in sys.modules, "
         "'cwd': os.getcwd(), 'names': sorted(k for k in globals() if not k.startswith('_')), "
         "'session': globals().get('__session__'), 'count': get_ipython().execution_count}))")

def run(kernel_id, code):
    cf = glob.glob(os.path.join(os.environ["JUPYTER_RUNTIME_DIR"], f"kernel-{kernel_id}.json"))[0]
    kc = BlockingKernelClient(connection_file=cf)
    kc.load_connection_file()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    out = []
    kc.execute_interactive(code, timeout=120, output_hook=lambda m: out.append(
        m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
    kc.stop_channels()
    return json.loads("".join(out).strip().splitlines()[-1])

def case(prewarm):
    env = {**os.environ, "ONELAB_PREWARM": prewarm,
           "JUPYTER_RUNTIME_DIR": f"/tmp/rt-{len(prewarm)}"}
    os.environ["JUPYTER_RUNTIME_DIR"] = env["JUPYTER_RUNTIME_DIR"]
    server = subprocess.Popen(["jupyter", "server", "--no-browser", "--port=8888",
                               "--IdentityProvider.token=t"], env=env, cwd="/home/learner",
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    threading.Thread(target=lambda: [log.append(l) for l in server.stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                listed = api("GET", "kernels")
                if not prewarm or any("waits for the learner" in l for l in log):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            return {"error": "".join(log)[-3000:]}
        t = time.monotonic()
        s = api("POST", "sessions", {"path": "week1/nb.ipynb", "type": "notebook",
                                     "name": "nb.ipynb", "kernel": {"name": "python3"}})
        kid = s["kernel"]["id"]
        first = run(kid, PROBE)
        first["seconds"] = time.monotonic() - t
        first["listed_before"] = len(listed)
        first["listed_after"] = len(api("GET", "kernels"))
        api("POST", f"kernels/{kid}/restart")
        time.sleep(2)
        again = run(kid, PROBE)
        first["cwd_after_restart"] = again["cwd"]
        first["torch_after_restart"] = again["torch"]
        first["handed_over"] = any("handed over" in l for l in log)
        return first
    finally:
        server.terminate()
        server.wait(30)

print(json.dumps([case("numpy,pandas,torch"), case("")]))
"""


def test_the_first_kernel_is_ready_with_imports_done_and_behaves_like_a_fresh_one(image):
    """ONELAB_PREWARM: the server starts a kernel ahead with torch imported; the notebook's
    first kernel is that one, with the namespace, working directory, session name and
    execution count of a fresh kernel, hidden from the kernel list until then, and a restart
    starts it in the notebook's folder again. Without it, a plain kernel starts as before."""
    out = dockerdoor.client().containers.run(
        image, ["python", "-c", FIRST_KERNEL], remove=True, network_mode="none", read_only=True,
        user="1000:1000", tmpfs={"/tmp": "mode=1777", "/home/learner": "uid=1000,gid=1000"},
        labels={"onelab.role": "test"})
    warm, fresh = json.loads(out.decode().strip().splitlines()[-1])
    assert "error" not in warm, warm.get("error")
    assert "error" not in fresh, fresh.get("error")
    assert warm["handed_over"] and not fresh["handed_over"]
    assert warm["torch"] is True and fresh["torch"] is False
    for key in ("cwd", "names", "session", "count"):
        assert warm[key] == fresh[key], (key, warm[key], fresh[key])
    assert warm["cwd"] == "/home/learner/week1"
    assert warm["session"] == "/home/learner/week1/nb.ipynb"
    assert warm["listed_before"] == 0 and warm["listed_after"] == 1
    assert warm["cwd_after_restart"] == "/home/learner/week1"
    assert warm["torch_after_restart"] is False  # a restart is a fresh process

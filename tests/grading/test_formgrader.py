"""The formgrader's "autograde" button grades in the sandbox too.

A real Jupyter server with nbgrader's formgrader on a course whose nbgrader_config.py calls
graders.hook.use_sandbox; the button's API call autogrades a submission in a container.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import nbformat
import pytest
import requests

from graders import democlass as demo
from tests.conftest import free_port

pytestmark = pytest.mark.integration

PROBE = ("import os\nprint('UID', os.getuid())\n"
         "print('GRADEBOOK', os.path.exists({gradebook!r}))")


@pytest.fixture()
def formgrader(tmp_path, docker_ready):
    from images.table import learner_image
    from onelab.settings import load

    image = learner_image(load(path=None, environ={}))
    course = demo.make_class(tmp_path / "course", 2)
    demo.submit(course, "s002", demo.ANSWERS["right"],
                [(2, PROBE.format(gradebook=str(course / "gradebook.db")))])
    cfg = course / "nbgrader_config.py"
    cfg.write_text(cfg.read_text() + "\nfrom graders.hook import use_sandbox\n"
                   f"use_sandbox(c, image={image!r}, cell_timeout=20)\n")
    port, token = free_port(), "formgrader-test-token"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "jcfg"), JUPYTER_DATA_DIR=str(tmp_path / "jdata"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jrun"))
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
         f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={course}",
         '--ServerApp.jpserver_extensions={"nbgrader.server_extensions.formgrader": True}'],
        cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if requests.get(f"{url}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError((tmp_path / "server.log").read_text()[-3000:])
        yield course, url, {"Authorization": f"token {token}"}
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_autograde_button_grades_in_the_sandbox(formgrader):
    course, url, auth = formgrader
    r = requests.post(f"{url}/formgrader/api/submission/{demo.ASSIGNMENT}/s002/autograde",
                      headers=auth, timeout=300)
    assert r.status_code == 200, r.text[:2000]
    assert json.loads(r.text)["success"], r.text[:2000]
    nb = nbformat.read(course / "autograded" / "s002" / demo.ASSIGNMENT / "problem1.ipynb", 4)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    # it ran as the sandbox's unprivileged user, with no gradebook in sight (the server is root)
    assert "UID 1000" in printed and "GRADEBOOK False" in printed
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert gb.find_submission(demo.ASSIGNMENT, "s002").score == 6
    from onelab import dockerdoor

    assert dockerdoor.containers("grader") == []

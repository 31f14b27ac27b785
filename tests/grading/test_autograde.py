"""Grading a class: honest work scores exactly as stock nbgrader, hostile work is contained.

Real nbgrader, real Docker containers of the learner image, real kernels.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from graders import democlass as demo
from graders.bench import cell_scores, stock_autograde
from graders.grade import Options, grade, scores
from images.table import learner_image
from onelab import dockerdoor
from onelab.settings import GradingLimits, load
from tests.conftest import tcp_listener

pytestmark = pytest.mark.integration

RIGHT, WRONG = demo.ANSWERS["right"], demo.ANSWERS["wrong"]
SECRET = "grader-secret-4e1f9c"


@pytest.fixture(scope="module")
def image(docker_ready):
    return learner_image(load(path=None, environ={}))


@pytest.fixture(scope="module")
def honest_class(tmp_path_factory, image):
    ours = demo.make_class(tmp_path_factory.mktemp("honest") / "course", 8)
    stock = ours.parent / "stock"
    shutil.copytree(ours, stock)
    outcomes = grade(ours, demo.ASSIGNMENT, Options(image=image), workers=2, progress=False)
    return ours, stock, outcomes


def test_honest_scores_are_identical_to_stock_nbgrader(honest_class):
    ours, stock, outcomes = honest_class
    assert all(o.status == "graded" for o in outcomes)
    stock_autograde(stock)
    stock_scores = {s: sc for s, (sc, _) in scores(stock, demo.ASSIGNMENT).items()}
    our_scores = {o.student: o.score for o in outcomes}
    assert our_scores == stock_scores
    assert our_scores["s001"] == 6 and our_scores["s002"] == 2 and our_scores["s003"] == 0
    assert cell_scores(ours) == cell_scores(stock)
    # the files nbgrader's other tools read are there, as nbgrader writes them
    nb = nbformat.read(ours / "autograded" / "s001" / demo.ASSIGNMENT / "problem1.ipynb", 4)
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")  # it really ran
    assert (ours / "autograded" / "s001" / demo.ASSIGNMENT / "timestamp.txt").exists()


def test_runs_are_resumable(honest_class, image):
    ours, _, _ = honest_class
    again = grade(ours, demo.ASSIGNMENT, Options(image=image), workers=2, progress=False)
    assert {o.status for o in again} == {"skipped"}
    assert {o.student: o.score for o in again}["s001"] == 6  # scores still reported
    demo.submit(ours, "s003", RIGHT)  # a resubmission...
    ts = ours / "submitted" / "s003" / demo.ASSIGNMENT / "timestamp.txt"
    ts.write_text("2026-11-24 10:00:00.000000 UTC")
    third = {o.student: o for o in grade(ours, demo.ASSIGNMENT, Options(image=image),
                                          workers=2, progress=False)}
    assert third["s003"].status == "graded" and third["s003"].score == 6  # ...is regraded
    assert third["s001"].status == "skipped"
    forced = grade(ours, demo.ASSIGNMENT, Options(image=image), students=["s001"], force=True,
                   progress=False)
    assert [(o.student, o.status) for o in forced] == [("s001", "graded")]
    log = ours / ".onelab" / "grade-logs" / demo.ASSIGNMENT / "s001.log"
    assert "Autograding" in log.read_text() or log.stat().st_size > 0


# -- hostile submissions ---------------------------------------------------------------------
# Drops every error message and turns an error's execute_reply into "ok": the kernel reports
# every failed test as passed (stock nbgrader, and OneLab before the completion mark, gave 6).
SESSION_SEND = """k = get_ipython().kernel
_orig = k.session.send
def _send(stream, msg_or_type, content=None, *a, **kw):
    if isinstance(msg_or_type, dict):
        t, c = msg_or_type['header']['msg_type'], msg_or_type.get('content', {})
    else:
        t, c = msg_or_type, content
    if t == 'error':
        return None
    if t == 'execute_reply' and isinstance(c, dict) and c.get('status') == 'error':
        c = {'status': 'ok', 'execution_count': c.get('execution_count'),
             'user_expressions': {}, 'payload': []}
        if isinstance(msg_or_type, dict):
            msg_or_type['content'] = c
        else:
            content = c
    return _orig(stream, msg_or_type, content, *a, **kw)
k.session.send = _send"""
# (name, answers, extra cells inserted after the first answer, score it must get)
HOSTILE = [
    ("fork_bomb", WRONG, "import os\nfor _ in range(100000):\n    try:\n        os.fork()\n"
     "    except OSError:\n        pass", 0),
    ("memory_bomb", RIGHT, "x = bytearray(3 * 1024**3)\nx[::4096] = b'1' * len(x[::4096])", 0),
    ("infinite_loop", RIGHT, "while True:\n    pass", 6),  # the loop is cut, the tests still run
    ("sleep", RIGHT, "import time\ntime.sleep(3600)", 6),
    ("kernel_exit", RIGHT, "import os\nos._exit(0)", 0),
    ("segfault", RIGHT, "import ctypes\nctypes.string_at(0)", 0),
    ("disk_fill", RIGHT, "import os\nwith open(os.path.expanduser('~/fill'), 'wb') as f:\n"
     "    for _ in range(1000):\n        f.write(b'0' * 1024 * 1024)", 6),
    ("huge_output", RIGHT, "print('x' * 30_000_000)", 6),
    ("network", RIGHT, "NETWORK_CODE", 6),
    ("read_others", RIGHT, "import os\nhits = []\nfor root, dirs, files in os.walk('/'):\n"
     "    if root.startswith(('/proc', '/sys', '/opt/onelab/venv', '/usr')):\n"
     "        dirs[:] = []\n        continue\n"
     "    hits += [os.path.join(root, d) for d in dirs if d.startswith('honest_')]\n"
     "    hits += [os.path.join(root, f) for f in files if f == 'gradebook.db']\n"
     "print('FOUND', hits)", 6),
    ("write_gradebook", WRONG, "import glob\nfor p in ['HOST_GRADEBOOK', '/gradebook.db', "
     "'/home/learner/gradebook.db'] + glob.glob('/*/gradebook.db'):\n    try:\n"
     "        open(p, 'w').write('pwned')\n        print('WROTE', p)\n    except OSError as e:\n"
     "        print('refused', p, e.errno)", 0),
    ("env_secrets", RIGHT, "import os\nprint(dict(os.environ))\n"
     "print(open('/proc/1/environ', 'rb').read() if os.access('/proc/1/environ', os.R_OK) "
     "else 'no access')", 6),
    ("neutralise_transformer", WRONG,
     "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])", 0),
    ("neutralise_self_removing", WRONG,
     "ip = get_ipython()\ndef t(lines):\n    ip.input_transformers_post.remove(t)\n"
     "    return ['pass\\n']\nip.input_transformers_post.append(t)", 0),
    ("neutralise_ast", WRONG,
     "import ast\nclass Nop(ast.NodeTransformer):\n    def visit_Assert(self, node):\n"
     "        return ast.Pass()\nget_ipython().ast_transformers.append(Nop())", 0),
    ("neutralise_trace", WRONG,
     "import sys\ndef tr(frame, event, arg):\n    return None\nsys.settrace(tr)", 0),
    ("neutralise_custom_exc", WRONG,
     "get_ipython().set_custom_exc((AssertionError,), lambda *a, **k: None)", 0),
    ("neutralise_traceback", WRONG,
     "get_ipython().showtraceback = lambda *a, **k: None\n"
     "get_ipython()._showtraceback = lambda *a, **k: None", 0),
    ("neutralise_run_cell", WRONG,
     "import IPython\nIPython.core.interactiveshell.InteractiveShell.run_cell = "
     "lambda self, *a, **k: None", 0),
    ("event_callbacks", WRONG,
     "def _skip(info):\n    if 'assert' in info.raw_cell:\n        raise KeyboardInterrupt\n"
     "def _clear(result):\n    result.error_in_exec = None\n"
     "get_ipython().events.register('pre_run_cell', _skip)\n"
     "get_ipython().events.register('post_run_cell', _clear)", 0),
    ("exit_hook", WRONG, "import atexit\natexit.register(print, 'bye')\nexit()", 0),
    # reporting, messaging and display layers: the kernel says a failed test passed
    ("session_send", WRONG, SESSION_SEND, 0),
    ("bdb_quit", WRONG, "import bdb\ndef add(a, b):\n    raise bdb.BdbQuit()\n"
     "def squares(n):\n    raise bdb.BdbQuit()", 0),
    # the cell machinery's globals: the asserts compile as something else
    ("module_global", WRONG,
     "import ast, IPython.core.interactiveshell as ish\n_M = ish.Module\n"
     "def _mod(body, ti):\n    return _M([ast.Pass(lineno=n.lineno, col_offset=0) "
     "if isinstance(n, ast.Assert) else n for n in body], ti)\nish.Module = _mod", 0),
    ("ast_property", WRONG,
     "import ast\ndef _true(self):\n    c = ast.Constant(True)\n    c.lineno = c.end_lineno = 1\n"
     "    c.col_offset = c.end_col_offset = 0\n    return c\n"
     "ast.Assert.test = property(_true, lambda self, v: None)", 0),
    # the completion mark called by the learner's own code, before the test fails
    ("forged_mark", WRONG, "import sys\ndef add(a, b):\n    sys.audit('onelab.cell-completed')\n"
     "    return 0\ndef squares(n):\n    sys.audit('onelab.cell-completed', 6)\n    return []", 0),
]


@pytest.fixture(scope="module")
def listener():
    """A TCP listener on the host that no grading container may reach."""
    with tcp_listener() as found:
        yield found


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, image, listener):
    port, _ = listener
    gateways = [n.attrs["IPAM"]["Config"][0]["Gateway"] for n in dockerdoor.client().networks.list()
                if n.attrs.get("IPAM", {}).get("Config") and
                n.attrs["IPAM"]["Config"][0].get("Gateway")]
    targets = ["127.0.0.1", *gateways]
    network_code = (
        f"import socket\nfor host in {targets!r}:\n    s = socket.socket(); s.settimeout(2)\n"
        f"    try:\n        s.connect((host, {port})); print('CONNECTED', host)\n"
        "    except OSError as e:\n        print('blocked', host, type(e).__name__)\n")
    course = demo.make_course(tmp_path_factory.mktemp("hostile") / "course")
    host_gradebook = str(course / "gradebook.db")
    for name, answers in (("honest_right", RIGHT), ("honest_half", demo.ANSWERS["half"]),
                          ("honest_wrong", WRONG)):
        demo.submit(course, name, answers)
    for name, answers, code, _ in HOSTILE:
        code = network_code if code == "NETWORK_CODE" else code.replace("HOST_GRADEBOOK",
                                                                        host_gradebook)
        demo.submit(course, name, answers, [(2, code)])
    tampered = demo.released(course)
    for cell in tampered.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            meta["points"] = 100
            cell.source = "pass"
        if meta.get("solution"):
            meta.update(grade=True, points=50)
    demo.submit(course, "tampered_metadata", WRONG, nb=tampered)
    demo.submit(course, "malformed_json", {}, raw='{"cells": [ this is not json')
    gradebook_before = (course / "gradebook.db").stat().st_size
    os.environ["GRADER_SECRET_TOKEN"] = SECRET
    try:
        outcomes = grade(course, demo.ASSIGNMENT,
                         Options(image=image, limits=GradingLimits(
                             memory="512m", cell_timeout=5, notebook_timeout=60,
                             max_output_bytes=200_000)),
                         workers=2, progress=False)
    finally:
        del os.environ["GRADER_SECRET_TOKEN"]
    return course, {o.student: o for o in outcomes}, gradebook_before


def outputs_text(course: Path, student: str) -> str:
    """Everything the graded notebook's cells printed or raised (not their sources)."""
    path = course / "autograded" / student / demo.ASSIGNMENT / "problem1.ipynb"
    if not path.exists():
        return ""
    nb = nbformat.read(path, as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells], ensure_ascii=False)


def printed_text(course: Path, student: str) -> str:
    """Only what the cells printed (a traceback would quote their source)."""
    path = course / "autograded" / student / demo.ASSIGNMENT / "problem1.ipynb"
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def test_at_least_15_hostile_submissions_are_contained(hostile_run, listener):
    course, got, _ = hostile_run
    assert len(HOSTILE) + 2 >= 15
    for name, _, _, expected in HOSTILE:
        assert got[name].status == "graded", (name, got[name])
        assert got[name].score == expected, (name, got[name].score, got[name].notes)
        assert got[name].max_score == 6, name
    # honest work in the same run keeps its right scores
    assert (got["honest_right"].score, got["honest_half"].score, got["honest_wrong"].score) == (
        6, 2, 0)
    # grading metadata in the submission never overrides the source's
    assert (got["tampered_metadata"].score, got["tampered_metadata"].max_score) == (0, 6)
    # a malformed notebook is graded as blank, with the reason in its feedback; the file stays
    assert (got["malformed_json"].status, got["malformed_json"].score) == ("graded", 0)
    assert "not valid notebook JSON" in " ".join(got["malformed_json"].notes)
    graded = (course / "autograded" / "malformed_json" / demo.ASSIGNMENT / "problem1.ipynb")
    assert "not valid notebook JSON" in graded.read_text()
    assert "could not be read" in outputs_text(course, "malformed_json")
    assert (course / "submitted" / "malformed_json" / demo.ASSIGNMENT /
            "problem1.ipynb").read_text() == '{"cells": [ this is not json'
    # nothing is left running
    assert dockerdoor.containers("grader") == []
    # no connection reached the host
    assert listener[1] == []
    assert "CONNECTED" not in printed_text(course, "network")
    assert "blocked" in printed_text(course, "network")


def test_nothing_leaks_out_of_the_sandbox(hostile_run):
    course, _got, gradebook_before = hostile_run
    assert SECRET not in outputs_text(course, "env_secrets")
    assert "no access" in outputs_text(course, "env_secrets")
    assert "FOUND []" in printed_text(course, "read_others")  # no gradebook, no other submission in sight
    printed = printed_text(course, "write_gradebook")
    assert "refused" in printed and "WROTE" not in printed
    # the gradebook is intact and holds every honest grade
    from nbgrader.api import Gradebook

    assert (course / "gradebook.db").stat().st_size >= gradebook_before
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert gb.find_submission(demo.ASSIGNMENT, "honest_right").score == 6


def test_reasons_reach_the_feedback(hostile_run):
    course, got, _ = hostile_run
    assert "did not finish" in outputs_text(course, "session_send")
    assert "tampered with grading" in outputs_text(course, "module_global")
    assert "tampered with grading" in outputs_text(course, "ast_property")
    assert "tampered with grading" in outputs_text(course, "neutralise_transformer") or \
        "different code" in outputs_text(course, "neutralise_transformer")
    assert "memory" in " ".join(got["memory_bomb"].notes) or "Kernel died" in " ".join(
        got["memory_bomb"].notes)
    cut = outputs_text(course, "huge_output")
    assert "output cut here" in cut and len(cut) < 2_000_000
    assert "ran past its time limit of 5 s" in outputs_text(course, "infinite_loop")
    # a stop says what happened in words, naming the cell (the extra cell went in as the
    # notebook's third), its limit and that it was stopped: in the graded notebook, in Korean
    # and English, and in the run's summary (its report is flagged), never as KeyboardInterrupt
    for name in ("infinite_loop", "sleep"):
        words = "cell 3 ran past its time limit of 5 s and was stopped"
        assert words in outputs_text(course, name)
        assert "3번 셀이 제한 시간 5초를 넘어 중단되었습니다" in outputs_text(course, name)
        assert any(words in n for n in got[name].notes), got[name].notes
        assert not any("KeyboardInterrupt" in n for n in got[name].notes)
    assert any("cell 3 went over the memory limit of 512 MiB and was stopped" in n
               for n in got["memory_bomb"].notes), got["memory_bomb"].notes
    assert "3번 셀이 메모리 한도(512 MiB)를 넘어 중단되었습니다" in outputs_text(course,
                                                                   "memory_bomb")
    assert "No space left on device" in outputs_text(course, "disk_fill")
    logs = course / ".onelab" / "grade-logs" / demo.ASSIGNMENT
    assert (logs / "kernel_exit.log").exists()
    assert json.loads((logs / "reports" / "kernel_exit" / "problem1.json").read_text())[
        "status"] != "ok"

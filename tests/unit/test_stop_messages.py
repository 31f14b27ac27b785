"""A limit that stops a cell or a notebook says so in words, naming the cell (its place in the
notebook, from 1), the limit and that it was stopped; in English and Korean, English msgids from
one table per component (graders/preprocessor.py STOP_MESSAGES, regress/papermill_run.py
MESSAGES, graders/incontainer.py STOP_EN) and their Korean from OneLab's catalogue."""

from __future__ import annotations

import json
import string

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from graders import preprocessor
from graders.execution import Execution
from graders.preprocessor import (
    STOP_MESSAGES,
    SandboxedExecute,
    cell_stops,
    for_learners,
    korean,
    merge,
    stop_words,
)
from onelab import i18n
from onelab.dockerdoor import PipedRun
from onelab.settings import load
from regress import papermill_run as pm
from tests.unit.incontainer import runner as _runner


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("table", [STOP_MESSAGES, pm.MESSAGES, _runner()["STOP_EN"]],
                         ids=["graders", "regress", "runner"])
def test_every_message_has_its_korean_in_the_catalogue_with_the_same_fields(table):
    ko = i18n.gettext("ko")
    catalogue = {m.id for m in i18n.catalog("ko")}
    for key, en in table.items():
        assert en in catalogue, key  # an N_-marked msgid, extracted
        assert ko(en) != en, key
        assert _fields(en) == _fields(ko(en)), key
        assert any("\uac00" <= ch <= "\ud7a3" for ch in ko(en)), key  # Hangul


def test_the_grading_service_reads_the_korean_from_its_own_copy_of_the_catalogue(
        tmp_path, monkeypatch):
    """In the course's grading service there is no onelab package: hub/formgrader.py copies
    the .po beside graders/preprocessor.py and names it in ONELAB_LOCALE_DIR."""
    from hub import formgrader

    folder = formgrader.write_config(load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path)}),
                                     "c1")
    po = folder / "locale" / "ko" / "LC_MESSAGES" / "onelab.po"
    assert po.read_bytes() == i18n.po_path("ko").read_bytes()
    assert (folder / "graders" / "preprocessor.py").is_file()
    inside = formgrader.CONFIG_DIR + "/locale"
    assert formgrader.LOCALE_DIR == inside  # box() names it in ONELAB_LOCALE_DIR
    monkeypatch.setenv("ONELAB_LOCALE_DIR", str(folder / "locale"))
    assert preprocessor.locale_dir() == folder / "locale"
    for kind, en in STOP_MESSAGES.items():
        assert preprocessor.translate(en, "ko") == i18n.gettext("ko")(en), kind
    # without a catalogue the words stay English, and learners read them once, not twice
    monkeypatch.setenv("ONELAB_LOCALE_DIR", str(tmp_path / "nowhere"))
    en = stop_words("memory_whole", limit="1G")
    assert stop_words("memory_whole", "ko", limit="1G") == en
    assert korean(en) is None and for_learners(en) == en


def test_the_words_name_the_cell_the_limit_and_that_it_was_stopped():
    assert stop_words("cell_timeout", cell=11, limit=40) == (
        "cell 11 ran past its time limit of 40 s and was stopped")
    assert stop_words("cell_timeout", "ko", cell=11, limit=40) == (
        "11번 셀이 제한 시간 40초를 넘어 중단되었습니다")
    assert pm.say("cell_timeout", cell=11, limit=40) == stop_words("cell_timeout", cell=11,
                                                                   limit=40)
    assert stop_words("memory_whole", limit="512m") == (
        "the notebook went over its memory limit of 512m and was stopped")


def test_the_runners_english_is_the_hosts():
    ns = _runner()
    for kind, en in ns["STOP_EN"].items():
        assert en == STOP_MESSAGES[kind], kind
    assert ns["stop_reason"]({"kind": "memory", "limit": 512 << 20}, 2) == (
        "cell 3 went over the memory limit of 512 MiB and was stopped; the cells after it did "
        "not run")
    assert ns["stop_reason"]({"kind": "notebook_timeout", "limit": 60}, 0).startswith(
        "the notebook ran past its time limit of 60 s and was stopped in cell 1")


def _cell(stop: dict | None = None, executed: bool = True) -> dict:
    c = {"outputs": [], "execution_count": 1 if executed else None, "executed": executed,
         "verified": executed, "why": "", "completed": executed, "value": "-"}
    if stop:
        c["stop"] = stop
    return c


def _nb():
    """A markdown cell, a solution, a learner's slow cell, a test: cells 1 to 4."""
    test = new_code_cell("assert answer == 42")
    test.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                 "grade_id": "t1", "points": 1}
    return new_notebook(cells=[new_markdown_cell("# Q"), new_code_cell("answer = 42"),
                               new_code_cell("import time; time.sleep(100)"), test])


def test_a_cell_stopped_by_its_time_limit_says_so_in_the_cell_and_the_report(tmp_path):
    class Fake(SandboxedExecute):
        def execute(self, payload, files, kernel, tests):
            return Execution("ok", cells=[
                _cell(), _cell(), _cell({"kind": "cell_timeout", "limit": 5}), _cell()])

    nb = _nb()
    Fake(report_dir=str(tmp_path)).preprocess(
        nb, {"nbgrader": {"student": "foo", "notebook": "p1"}})
    note = nb.cells[2].outputs[-1]["text"]
    assert "3번 셀이 제한 시간 5초를 넘어 중단되었습니다" in note
    assert "cell 3 ran past its time limit of 5 s and was stopped" in note
    assert not any("OneLab" in o.get("text", "") for o in nb.cells[3].outputs)
    report = json.loads((tmp_path / "foo" / "p1.json").read_text())
    # `onelab grade` lists every report that is not "ok", with its reason, in its summary
    assert report["status"] == "flagged"
    assert report["reason"] == "cell 3 ran past its time limit of 5 s and was stopped"
    assert "KeyboardInterrupt" not in report["reason"]


@pytest.mark.parametrize("stop, status, words", [
    ({"kind": "notebook_timeout", "limit": 60}, "timeout",
     "the notebook ran past its time limit of 60 s and was stopped in cell 3"),
    ({"kind": "memory", "limit": 512 << 20}, "error",
     "cell 3 went over the memory limit of 512 MiB and was stopped"),
    ({"kind": "cell_timeout_killed", "limit": 5}, "error",
     "cell 3 ran past its time limit of 5 s and was stopped; its kernel did not answer"),
])
def test_a_notebook_stopped_early_says_why_on_the_tests_that_did_not_run(tmp_path, stop, status,
                                                                         words):
    class Fake(SandboxedExecute):
        def execute(self, payload, files, kernel, tests):
            # the runner's own English reason is not what the words are made from
            return Execution(status, "runner's words", cells=[
                _cell(), _cell(), _cell(stop), _cell(executed=False)])

    nb = _nb()
    Fake(report_dir=str(tmp_path)).preprocess(
        nb, {"nbgrader": {"student": "foo", "notebook": "p1"}})
    assert words in nb.cells[2].outputs[-1]["text"]
    error = nb.cells[3].outputs[-1]
    assert error["output_type"] == "error"  # the test earns nothing
    assert error["evalue"].startswith("이 테스트는 실행되지 않았습니다: ")
    assert f"/ this test did not run: {words}" in error["evalue"]
    report = json.loads((tmp_path / "foo" / "p1.json").read_text())
    assert report["status"] == status and report["reason"].startswith(words)


def test_a_stop_of_the_wrong_shape_is_ignored():
    run = Execution("ok", cells=[_cell({"kind": "cell_timeout", "limit": "5; rm -rf"}),
                                 _cell({"kind": "nonsense", "limit": 5}),
                                 _cell({"kind": "cell_timeout", "limit": True}), _cell("x")])
    assert cell_stops(run) == []
    nb = new_notebook(cells=[new_code_cell("1") for _ in range(4)])
    merge(nb, run)
    assert all(not c.outputs for c in nb.cells)


def test_sentences_from_the_table_read_in_korean_for_learners():
    # a reason that came as text (graders/sandbox.py, the course's grading service)
    en = stop_words("memory_whole", limit="1G")
    assert korean(en) == "노트북이 메모리 한도(1G)를 넘어 중단되었습니다"
    assert for_learners(en) == f"{korean(en)} / {en}"
    nested = stop_words("test_not_run", why=stop_words("notebook_timeout_whole", limit=300))
    assert korean(nested) == "이 테스트는 실행되지 않았습니다: 노트북이 제한 시간 300초를 넘어 중단되었습니다"
    assert for_learners("the kernel did not start: boom") == "the kernel did not start: boom"


# -- regression (papermill) -------------------------------------------------------------------

def _papermill_nb():
    """As papermill leaves it after the cell time limit: cell 3 started, cell 4 never did."""
    nb = new_notebook(cells=[new_markdown_cell("# t"), new_code_cell("x = 1"),
                             new_code_cell("import time\ntime.sleep(100)"),
                             new_code_cell("print(2)")])
    injected = new_code_cell("N = 1", metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(1, injected)
    for i in range(4):
        nb.cells[i].metadata["papermill"] = {"start_time": "2026-12-01T08:24:51Z"}
    nb.cells[4].metadata["papermill"] = {"start_time": None}
    nb.cells[3].outputs = [{"output_type": "error", "ename": "KeyboardInterrupt",
                            "evalue": "", "traceback": []}]
    return nb


def test_regress_names_the_stopped_cell_not_keyboardinterrupt():
    nb = _papermill_nb()
    cell = pm.last_started(nb)
    assert cell == (3, "import time")  # papermill's injected cell is not counted
    res = PipedRun(1, b"", "nbclient.exceptions.CellTimeoutError: A cell timed out while it "
                           "was being executed, after 5 seconds.")
    stop = pm.stop_facts(res, cell, timeout=5, memory="4G")
    assert pm.stop_words(stop) == "cell 3 ran past its time limit of 5 s and was stopped"
    assert pm.stop_words(stop, "ko") == "3번 셀이 제한 시간 5초를 넘어 중단되었습니다"
    assert pm.cell_errors("c/a/nb.ipynb", nb, skip=3) == []
    assert "KeyboardInterrupt" in pm.cell_errors("c/a/nb.ipynb", nb)[0]  # what it was before


def test_regress_says_which_limit_stopped_the_whole_run():
    cell = (3, "import time")
    killed = PipedRun(None, b"", "", timed_out=True)
    assert pm.stop_words(pm.stop_facts(killed, cell, timeout=5, memory="4G")) == (
        "the notebook ran past its time limit of 125 s and was stopped in cell 3")
    assert pm.stop_words(pm.stop_facts(killed, None, timeout=5, memory="4G")) == (
        "the notebook ran past its time limit of 125 s and was stopped")
    oom = PipedRun(137, b"", "DeadKernelError", oom_killed=True)
    assert pm.stop_words(pm.stop_facts(oom, cell, timeout=5, memory="4G")) == (
        "cell 3 went over the memory limit of 4G and was stopped")
    died = PipedRun(1, b"", "nbclient.exceptions.DeadKernelError: Kernel died")
    assert pm.stop_facts(died, cell, timeout=5, memory="4G")["kind"] == "kernel_died"
    assert pm.stop_facts(PipedRun(1, b"", "ZeroDivisionError"), cell, timeout=5,
                         memory="4G") is None

"""nbgrader's own autograde test cases, run against `onelab grade`.

The notebooks and data are the ones nbgrader ships for its tests (nbgrader/tests/apps/files/);
each test sets up its course as nbgrader's test of the same name does
(nbgrader/tests/apps/test_nbgrader_autograde.py) and asserts what that test asserts, or, where
OneLab differs on purpose, what OneLab promises instead and why.

One change to every notebook copied: nbgrader's files name their kernel "python", which only
nbgrader's own test machines have; the learner image's Python kernel is "python3".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import nbgrader
import pytest

from graders.execution import Execution
from graders.grade import Options, grade
from images.table import learner_image
from onelab.settings import GradingLimits, load

pytestmark = pytest.mark.integration

FILES = Path(nbgrader.__file__).parent / "tests" / "apps" / "files"
PS1 = "ps1"


@pytest.fixture(scope="module")
def image(docker_ready):
    return learner_image(load(path=None, environ={}))


@pytest.fixture(scope="module")
def sandbox_returns_files(image) -> bool:
    """Whether the sandbox's run brings back the files a notebook wrote: the runner sends them
    in its signed reply; graders/sandbox.py's execute() must pass reply["files"] on."""
    from graders import sandbox

    nb = {"cells": [{"cell_type": "code", "source": "open('x.txt', 'w').write('x')",
                     "metadata": {}, "outputs": [], "execution_count": None}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    run: Execution = sandbox.execute(nb, {}, image, GradingLimits(notebook_timeout=60))
    assert run.status == "ok", run
    return run.files is not None


def needs_files(returned: bool) -> None:
    assert returned, "the sandbox's run must bring back the files a notebook wrote"


def put(what: str | nbformat.NotebookNode, dest: Path) -> None:
    """Write a notebook: one of nbgrader's test notebooks by name (kernel renamed, see the
    module's docstring), "" for an empty one, or the notebook given."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(what, nbformat.NotebookNode):
        nb = what
    elif what:
        nb = nbformat.read(FILES / what, as_version=nbformat.NO_CONVERT)
    else:
        nb = nbformat.v4.new_notebook()
    spec = nb.metadata.get("kernelspec")
    if spec and spec.get("name") == "python":
        spec["name"] = "python3"
    nbformat.write(nb, dest)


def make_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def course(root: Path, sources: dict[str, Any], config: str = "",
           other: dict[str, str] | None = None) -> Path:
    """An nbgrader course with ps1 made from `sources` ({notebook: what put() writes}) and
    `other` files in source/ps1, released as nbgrader's tests do."""
    from graders.grade import nbgrader_api

    root.mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'nbcases'\n" + config)
    for nb_name, what in sources.items():
        put(what, root / "source" / PS1 / nb_name)
    for rel, text in (other or {}).items():
        make_file(root / "source" / PS1 / rel, text)
    result = nbgrader_api(root).generate_assignment(PS1, force=True, create=True)
    assert result["success"], result.get("error")
    return root


def submit(root: Path, student: str, notebooks: dict[str, Any],
           other: dict[str, str] | None = None) -> Path:
    dest = root / "submitted" / student / PS1
    dest.mkdir(parents=True, exist_ok=True)
    for nb_name, what in notebooks.items():
        put(what, dest / nb_name)
    for rel, text in (other or {}).items():
        make_file(dest / rel, text)
    return dest


def run(root: Path, image: str, **kw):
    opts = Options(image=image, limits=GradingLimits(**kw.pop("limits", {})))
    return {o.student: o for o in grade(root, PS1, opts, workers=2, progress=False,
                                        echo=lambda _: None, **kw)}


def gradebook(root: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{root / 'gradebook.db'}")


def graded(root: Path, student: str, *rel: str) -> Path:
    return root / "autograded" / student / PS1 / Path(*rel)


def report(root: Path, student: str, notebook: str = "p1") -> dict:
    path = root / ".onelab" / "grade-logs" / PS1 / "reports" / student / f"{notebook}.json"
    return json.loads(path.read_text())


# -- test_grade and test_showtraceback_exploit ----------------------------------------------

@pytest.fixture(scope="module")
def graded_class(tmp_path_factory, image):
    root = course(tmp_path_factory.mktemp("grade") / "course",
                  {"p1.ipynb": "submitted-unchanged.ipynb"})
    submit(root, "foo", {"p1.ipynb": "submitted-unchanged.ipynb"})
    submit(root, "bar", {"p1.ipynb": "submitted-changed.ipynb"})
    submit(root, "spam", {"p1.ipynb": "submitted-cheat-attempt.ipynb"})
    submit(root, "eggs", {"p1.ipynb": "submitted-cheat-attempt-alternative.ipynb"})
    return root, run(root, image)


def test_grade(graded_class):
    root, got = graded_class
    assert {s: o.status for s, o in got.items()} == dict.fromkeys(got, "graded")
    for student in ("foo", "bar"):
        assert graded(root, student, "p1.ipynb").is_file()
        assert not graded(root, student, "timestamp.txt").is_file()
    with gradebook(root) as gb:
        nb = gb.find_submission_notebook("p1", PS1, "foo")
        assert (nb.score, nb.max_score, nb.needs_manual_grade) == (1, 7, False)
        for cell in ("set_a", "baz", "quux"):
            assert gb.find_comment(cell, "p1", PS1, "foo").comment == "No response."
        nb = gb.find_submission_notebook("p1", PS1, "bar")
        assert (nb.score, nb.max_score, nb.needs_manual_grade) == (2, 7, True)
        assert gb.find_comment("set_a", "p1", PS1, "bar").comment is None
        assert gb.find_comment("quux", "p1", PS1, "bar").comment is None


@pytest.mark.parametrize("student", ["spam", "eggs"])
def test_showtraceback_exploit(graded_class, student):
    """nbgrader gives these 1 of 7 (the "Success!" test) and needs a person for the written
    answers. OneLab: the guard sees the replaced showtraceback, so no test after it counts (0,
    never more than nbgrader's 1), the reason is on each test in the graded notebook and its
    feedback, and the run's summary flags the submission for a person."""
    root, got = graded_class
    assert graded(root, student, "p1.ipynb").is_file()
    assert not graded(root, student, "timestamp.txt").is_file()
    with gradebook(root) as gb:
        nb = gb.find_submission_notebook("p1", PS1, student)
        assert nb.score == 0 and nb.score <= 1
        assert (nb.max_score, nb.needs_manual_grade) == (7, True)
    assert "tampered with grading" in graded(root, student, "p1.ipynb").read_text()
    assert report(root, student)["status"] == "flagged"
    assert any("tampered with grading" in n for n in got[student].notes), got[student].notes
    # honest work in the same run is not flagged
    assert report(root, "bar")["status"] == "ok" and got["bar"].notes == []


# -- test_side_effects -----------------------------------------------------------------------

def test_side_effects(tmp_path, image, sandbox_returns_files):
    root = course(tmp_path / "course", {"p1.ipynb": "side-effects.ipynb"})
    submit(root, "foo", {"p1.ipynb": "side-effects.ipynb"})
    got = run(root, image)
    assert got["foo"].status == "graded"
    needs_files(sandbox_returns_files)
    assert graded(root, "foo", "side-effect.txt").is_file()
    assert graded(root, "foo", "side-effect.txt").read_text() == "a side effect"
    assert not (root / "submitted" / "foo" / PS1 / "side-effect.txt").is_file()


WRITER = """import os
os.makedirs('out/deep', exist_ok=True)
open('out/deep/model.txt', 'w').write('weights')
for i in range(4):
    open(f'plot{i}.png', 'wb').write(b'png')
open('big.bin', 'wb').write(b'0' * (21 * 1024 * 1024))
open('timestamp.txt', 'w').write('2099-01-01 00:00:00 UTC')
open('p1.ipynb', 'w').write('{}')
open('.hidden', 'w').write('no')
os.symlink('/etc/passwd', 'passwd')
open('data.csv', 'a').write('3,4\\n')"""


def test_side_effects_stay_within_bounds(tmp_path, image, sandbox_returns_files):
    """OneLab's side of the same promise: what a notebook writes lands beside its graded copy
    only as plain files, under safe names, within the caps (here 3 files; the runner's own cap
    of 20 MiB leaves out big.bin), never over the notebook or timestamp.txt; what was left out
    is said in the graded notebook and the run's summary."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(WRITER)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    root = course(tmp_path / "course", {"p1.ipynb": nb},
                  "c.SandboxedExecute.max_written_files = 3\n", {"data.csv": "1,2\n"})
    stamp = "2026-11-24 09:00:00.000000 UTC"
    submit(root, "foo", {"p1.ipynb": nb}, {"data.csv": "1,2\n", "timestamp.txt": stamp})
    got = run(root, image)
    assert got["foo"].status == "graded"
    needs_files(sandbox_returns_files)
    kept = sorted(p.relative_to(graded(root, "foo")).as_posix()
                  for p in graded(root, "foo").rglob("*") if p.is_file() or p.is_symlink())
    # three kept, in name order: data.csv (changed), out/deep/model.txt, plot0.png
    assert kept == ["data.csv", "out/deep/model.txt", "p1.ipynb", "plot0.png", "timestamp.txt"]
    assert graded(root, "foo", "data.csv").read_text() == "1,2\n3,4\n"
    assert graded(root, "foo", "timestamp.txt").read_text() == stamp
    out = nbformat.read(graded(root, "foo", "p1.ipynb"), 4)
    said = "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))
    assert "[OneLab: 4 file(s) the notebook wrote were not kept" in said
    assert "big.bin" in said and "plot3.png" in said
    assert "would replace the notebooks or timestamp.txt: p1.ipynb, timestamp.txt" in said
    assert any("not kept" in n for n in got["foo"].notes)
    assert not (root / "submitted" / "foo" / PS1 / "plot0.png").exists()


# -- test_force, test_grade_overwrite_files: the submission's other files ----------------------

def test_force(tmp_path, image):
    root = course(tmp_path / "course", {"p1.ipynb": "submitted-unchanged.ipynb"},
                  other={"foo.txt": "foo", "data/bar.txt": "bar"})
    submit(root, "foo", {"p1.ipynb": "submitted-unchanged.ipynb"},
           {"foo.txt": "foo", "data/bar.txt": "bar", "blah.pyc": "asdf"})
    run(root, image)
    assert graded(root, "foo", "p1.ipynb").is_file()
    assert graded(root, "foo", "foo.txt").is_file()
    assert graded(root, "foo", "data", "bar.txt").is_file()
    assert not graded(root, "foo", "blah.pyc").is_file()

    # it skips a submission already graded
    graded(root, "foo", "foo.txt").unlink()
    assert run(root, image)["foo"].status == "skipped"
    assert not graded(root, "foo", "foo.txt").is_file()

    # --force overwrites the supplemental files
    assert run(root, image, force=True)["foo"].status == "graded"
    assert graded(root, "foo", "foo.txt").is_file()

    # --force overwrites
    (root / "source" / PS1 / "foo.txt").unlink()
    (root / "submitted" / "foo" / PS1 / "foo.txt").unlink()
    run(root, image, force=True)
    assert graded(root, "foo", "p1.ipynb").is_file()
    assert not graded(root, "foo", "foo.txt").is_file()
    assert graded(root, "foo", "data", "bar.txt").is_file()
    assert not graded(root, "foo", "blah.pyc").is_file()


@pytest.mark.parametrize("sub", ["", "subdir/"])
def test_grade_overwrite_files(tmp_path, image, sub):
    """Also test_grade_overwrite_files_subdirs: the source's files replace the submission's,
    except those the course excludes; the submission's timestamp is kept."""
    root = course(tmp_path / "course", {"p1.ipynb": "submitted-unchanged.ipynb"},
                  f'c.Autograde.exclude_overwriting = {{"ps1": ["{sub}helper.py"]}}\n',
                  {f"{sub}data.csv": "some,data\n", f"{sub}helper.py": "print('hello!')\n"})
    stamp = "2015-02-02 15:58:23.948203 America/Los_Angeles"
    submit(root, "foo", {"p1.ipynb": "submitted-unchanged.ipynb"},
           {"timestamp.txt": stamp, f"{sub}data.csv": "some,other,data\n",
            f"{sub}helper.py": "print('this is different!')\n"})
    run(root, image)
    assert graded(root, "foo", "p1.ipynb").is_file()
    assert graded(root, "foo", "timestamp.txt").read_text() == stamp
    assert graded(root, "foo", f"{sub}data.csv").read_text() == "some,data\n"
    assert graded(root, "foo", f"{sub}helper.py").read_text() == "print('this is different!')\n"


# -- missing and extra notebooks ---------------------------------------------------------------

def test_skip_extra_notebooks(tmp_path, image):
    root = course(tmp_path / "course", {"p1.ipynb": "submitted-unchanged.ipynb"})
    submit(root, "foo", {"p1 copy.ipynb": "submitted-unchanged.ipynb",
                         "p1.ipynb": "submitted-changed.ipynb"})
    run(root, image)
    assert graded(root, "foo", "p1.ipynb").is_file()
    assert not graded(root, "foo", "p1 copy.ipynb").is_file()


def test_grade_missing_notebook(tmp_path, image):
    root = course(tmp_path / "course", {"p1.ipynb": "submitted-unchanged.ipynb",
                                        "p2.ipynb": "submitted-unchanged.ipynb"})
    submit(root, "foo", {"p1.ipynb": "submitted-changed.ipynb"})
    run(root, image)
    assert graded(root, "foo", "p1.ipynb").is_file()
    assert not graded(root, "foo", "p2.ipynb").is_file()
    with gradebook(root) as gb:
        _, nb2 = gb.find_submission(PS1, "foo").notebooks
        assert not nb2.needs_manual_grade
        assert nb2.score == 0


def test_missing_files(tmp_path, image):
    root = course(tmp_path / "course", {"p1.ipynb": ""})
    submit(root, "foo", {"p1.ipynb": ""})
    (root / "submitted" / "bar" / PS1).mkdir(parents=True)
    got = run(root, image)
    assert got["foo"].status == "graded"
    assert graded(root, "foo", "p1.ipynb").is_file()
    assert not (root / "autograded" / "bar").exists()


# -- time limits -------------------------------------------------------------------------------

def test_infinite_loop(tmp_path, image):
    """nbgrader: c.Execute.timeout = 1 and the notebook is still graded. OneLab's per-cell
    limit is --cell-timeout."""
    root = course(tmp_path / "course", {"p1.ipynb": "infinite-loop.ipynb"})
    submit(root, "foo", {"p1.ipynb": "infinite-loop.ipynb"})
    got = run(root, image, limits={"cell_timeout": 1})
    assert got["foo"].status == "graded"
    assert graded(root, "foo", "p1.ipynb").is_file()


def test_autograde_timeout(tmp_path, image):
    """A test that sleeps 5 s passes under the default limit and fails under a 2 s one."""
    root = course(tmp_path / "course", {"p1.ipynb": "timeout.ipynb"})
    submit(root, "foo", {"p1.ipynb": "timeout.ipynb"})
    submit(root, "bar", {"p1.ipynb": "timeout.ipynb"})
    run(root, image, students=["foo"])
    run(root, image, students=["bar"], limits={"cell_timeout": 2})
    with gradebook(root) as gb:
        assert gb.find_submission_notebook("p1", PS1, "foo").score == 1
        assert gb.find_submission_notebook("p1", PS1, "bar").score == 0


# -- notebooks nbgrader cannot grade -----------------------------------------------------------

def test_handle_failure(tmp_path, image):
    """nbgrader stops at bar's p2, a notebook whose cells claim grade ids the source does not
    have (autograde fails, no autograded/bar). OneLab grades it: cells with grade ids the
    gradebook does not know are ordinary code (graders/preprocessor.py RestoreSourceMetadata),
    so a learner's copy can neither break grading nor invent points: p2 is worth 0 of 0, and
    bar gets a graded copy and feedback like everyone else."""
    root = course(tmp_path / "course", {"p1.ipynb": "", "p2.ipynb": ""})
    submit(root, "bar", {"p1.ipynb": "", "p2.ipynb": "test.ipynb"})
    submit(root, "foo", {"p1.ipynb": "", "p2.ipynb": ""})
    got = run(root, image)
    assert graded(root, "foo", "p1.ipynb").is_file()
    assert got["bar"].status == "graded"
    assert graded(root, "bar", "p2.ipynb").is_file()
    with gradebook(root) as gb:
        sub = gb.find_submission(PS1, "bar")
        assert (sub.score, sub.max_score) == (0, 0)


def test_unreadable_notebook(tmp_path, image):
    """nbgrader stops at a submitted notebook it cannot read (no autograded copy, as in its
    test_handle_failure). OneLab grades the released notebook in its place, unrun: 0 points,
    the reason on every test and in the run's summary, the submitted file left as it was."""
    root = course(tmp_path / "course", {"p1.ipynb": "submitted-unchanged.ipynb"})
    submit(root, "foo", {"p1.ipynb": "submitted-changed.ipynb"})
    dest = submit(root, "bar", {})
    (dest / "p1.ipynb").write_text('{"cells": [ not json')
    got = run(root, image)
    assert (got["foo"].status, got["foo"].score) == ("graded", 2)
    assert (got["bar"].status, got["bar"].score) == ("graded", 0)
    assert any("not valid notebook JSON" in n for n in got["bar"].notes)
    assert "could not be read" in graded(root, "bar", "p1.ipynb").read_text()
    assert (dest / "p1.ipynb").read_text() == '{"cells": [ not json'

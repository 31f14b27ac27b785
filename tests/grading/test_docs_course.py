"""nbgrader's own documentation course (ps1, the shipped example submissions) scores the same
under `onelab grade` as under stock `nbgrader autograde`, cell by cell.

A course nbgrader itself publishes, not one of ours: its notebooks name their kernel "python"
(not "python3"), so each is started by jupyter_client rather than forked (until 6ef5795 that
lost every completion mark: every test scored 0), interleave markdown and manually graded
cells with the tests, and start test cells with a docstring. Real nbgrader, real Docker
containers of the learner image.
"""

from __future__ import annotations

import shutil

import pytest

from graders import docscourse
from graders.bench import cell_scores, stock_autograde
from graders.grade import Options, grade, scores
from images.table import learner_image
from onelab.settings import load

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image(docker_ready):
    return learner_image(load(path=None, environ={}))


@pytest.fixture(scope="module")
def docs_class(tmp_path_factory):
    """Two learners: s001 submits bitdiddle's ps1, s002 hacker's (files and timestamps as
    shipped), graded by stock nbgrader in one copy of the course."""
    ours = docscourse.make_class(tmp_path_factory.mktemp("docs") / "course", 2)
    stock = ours.parent / "stock"
    shutil.copytree(ours, stock)
    stock_autograde(stock, docscourse.ASSIGNMENT)
    return ours, stock


def test_stock_nbgrader_gives_the_docs_scores(docs_class):
    _, stock = docs_class
    got = {s: score for s, (score, _) in scores(stock, docscourse.ASSIGNMENT).items()}
    # the scores nbgrader's documentation shows for these two (user_guide/grades.csv)
    assert got == {"s001": 1.5, "s002": 3.0}


def test_onelab_grade_scores_every_cell_as_stock_nbgrader(docs_class, image):
    ours, stock = docs_class
    outcomes = grade(ours, docscourse.ASSIGNMENT, Options(image=image), workers=2,
                     progress=False)
    assert [(o.student, o.status) for o in outcomes] == [("s001", "graded"), ("s002", "graded")]
    assert scores(ours, docscourse.ASSIGNMENT) == scores(stock, docscourse.ASSIGNMENT)
    ours_cells = cell_scores(ours, docscourse.ASSIGNMENT)
    assert ours_cells == cell_scores(stock, docscourse.ASSIGNMENT)
    assert len(ours_cells) == 2 * 9  # both notebooks' graded cells, for each learner

"""The always-equal probe on the host, without Docker: which names a solution cell answers, the
probe submission it becomes, and that the probe fools `==` but not a real conversion."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest

from regress.probe import autograder_tests, bound_names, probe_cell, probe_notebook
from tests.courses import minicourse


def _probe() -> object:
    namespace: dict = {}
    exec(probe_cell("answer = 6 * 7"), namespace)  # noqa: S102 - the text the probe cell runs
    return namespace["answer"]


def test_top_level_names_are_answers_and_local_ones_are_not():
    names, imports = bound_names(
        "%matplotlib inline\n"
        "import numpy as np\nfrom math import sqrt as root\n"
        "x, (y, *z) = 1, (2, 3)\n"
        "for i in range(3):\n    k = [j for j in range(i)]\n"
        "def fit(a):\n    inner = a\n    return inner\n"
        "class Model:\n    width = 3\n"
        "self_like = object()\nself_like.attr = 1\nd = {}\nd['key'] = 2\n"
        "with open('f') as fh:\n    pass\n")
    assert names == ["x", "y", "z", "i", "k", "fit", "Model", "self_like", "d", "fh"]
    assert imports == ["import numpy as np", "from math import sqrt as root"]


def test_a_solution_cell_becomes_its_imports_and_probes_without_running_the_solution(tmp_path):
    code = probe_cell("import math\n### BEGIN SOLUTION\nraise SystemExit('ran the solution')\n"
                      "value = math.pi\n### END SOLUTION")
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the solution's raise must not be in it
    assert namespace["math"] is math
    assert type(namespace["value"]).__name__ == "_OneLabAlwaysEqual"
    assert "ran the solution" not in code


def test_the_probe_passes_comparisons_but_not_conversions():
    p = _probe()
    assert p == 42 and p == "forty-two" and (p != 42) is False
    assert abs(p - 42) < 1e-9 and 0 <= p <= 1 and p.shape == (3, 4) and 3 in p
    a, b = p  # as many items as an unpacking asks for
    first, *rest, last = p
    assert a == b == first == last == 42 and rest == []
    assert math.isnan(float(p)) and float(p) != 42.0
    assert not isinstance(p, int) and type(p) is not float
    assert int(p) != 42 and len(p) == 1 and len(list(p)) == 1
    assert f"{p:.2f}" == "nan" and repr(p) == "<always-equal answer>"


def test_the_probe_notebook_answers_every_solution_cell_and_leaves_tests_alone(tmp_path):
    source = tmp_path / "answer.ipynb"
    nbformat.write(minicourse.answer_notebook(), str(source))
    released = tmp_path / "released.ipynb"
    nb = minicourse.answer_notebook()
    nb.cells[2].source = "# YOUR CODE HERE\nraise NotImplementedError()"
    nbformat.write(nb, str(released))
    probed, skipped = probe_notebook(released, source)
    assert skipped == []
    assert probed.cells[2].source.rstrip().endswith("answer = pair = _OneLabAlwaysEqual()")
    assert [c.source for c in probed.cells[3:]] == [c.source for c in nb.cells[3:]]
    assert autograder_tests(probed) == ["test_weak", "test_pair", "test_float", "test_isinstance"]


def test_an_unparsable_solution_is_left_as_released_and_said(tmp_path: Path):
    nb = minicourse.answer_notebook()
    nb.cells[2].source = "### BEGIN SOLUTION\nanswer = (\n### END SOLUTION"
    source = tmp_path / "answer.ipynb"
    nbformat.write(nb, str(source))
    probed, skipped = probe_notebook(source, source)
    assert probed.cells[2].source == nb.cells[2].source
    assert len(skipped) == 1 and "'answer' left as released" in skipped[0]


@pytest.mark.parametrize("test", ["assert answer == 42", "assert answer >= 41.5",
                                  "assert round(answer, 2) == 42"])
def test_weak_asserts_pass_on_the_probe(test):
    exec(test, {"answer": _probe()})  # noqa: S102


@pytest.mark.parametrize("test", ["assert float(answer) == 42.0",
                                  "assert isinstance(answer, int) and answer == 42",
                                  "assert type(answer) is int", "assert int(answer) == 42",
                                  "assert len(answer) == 42"])
def test_robust_asserts_fail_on_the_probe(test):
    with pytest.raises(AssertionError):
        exec(test, {"answer": _probe()})  # noqa: S102

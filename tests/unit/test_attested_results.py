"""A finished test cell's result is the one the guard recorded, not the one the kernel sent."""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_notebook, new_output

from graders.preprocessor import attested_results, merge
from graders.sandbox import Execution


def _result(text: str) -> dict:
    return new_output("execute_result", data={"text/plain": text}, execution_count=3)


def test_a_forged_partial_credit_number_is_replaced_by_the_recorded_one():
    out = attested_results([_result("3")], "n:1.0", 3)
    assert [o.data["text/plain"] for o in out] == ["1.0"]


def test_the_kernels_display_is_kept_when_it_shows_the_recorded_number():
    shown = _result("2")
    out = attested_results([new_output("stream", name="stdout", text="hi\n"), shown], "n:2", 3)
    assert out[1] is shown and len(out) == 2


def test_no_recorded_value_means_no_result_whatever_the_kernel_showed():
    assert attested_results([_result("5")], "none", 3) == []
    assert attested_results([_result("5")], "-", 3) == []


def test_a_non_number_keeps_its_display_unless_the_display_is_a_number():
    frame = _result("   a\n0  1")
    assert attested_results([frame], "o:DataFrame", 3) == [frame]
    assert attested_results([_result("4")], "o:Sneaky", 3) == []


def _graded(source: str) -> dict:
    cell = new_code_cell(source, metadata={"nbgrader": {
        "grade_id": "t", "grade": True, "solution": False, "locked": True, "points": 3,
        "schema_version": 3}})
    return cell


def test_a_test_that_raised_earns_nothing_even_when_its_error_was_hidden():
    nb = new_notebook(cells=[_graded("assert f() == 1")])
    run = Execution("ok", cells=[{"outputs": [], "execution_count": 1, "executed": True,
                                  "verified": True, "completed": False, "value": ""}])
    merge(nb, run)
    errors = [o for o in nb.cells[0].outputs if o.output_type == "error"]
    assert errors and "did not finish" in errors[0].evalue


def test_a_completed_test_without_errors_stays_clean():
    nb = new_notebook(cells=[_graded("assert f() == 1")])
    run = Execution("ok", cells=[{"outputs": [], "execution_count": 1, "executed": True,
                                  "verified": True, "completed": True, "value": "-"}])
    merge(nb, run)
    assert nb.cells[0].outputs == []


def test_learner_html_is_inert_in_the_graded_notebook():
    from nbformat.v4 import new_markdown_cell, new_raw_cell

    from graders.preprocessor import inert

    cell = new_code_cell("x")
    cell.outputs = [
        new_output("display_data", data={"text/html": "<b>ok</b><script>steal()</script>",
                                         "text/plain": "ok"}),
        new_output("display_data", data={"application/javascript": "steal()"}),
        new_output("display_data", data={"image/svg+xml": "<svg onload='steal()'></svg>"}),
        new_output("display_data", data={"image/svg+xml": "<svg><circle r='1'/></svg>"}),
    ]
    nb = new_notebook(cells=[new_markdown_cell("**answer** <img src=x onerror=steal()>"),
                             new_markdown_cell("`a < b` is *fine*"),
                             new_raw_cell("<script>steal()</script>"), cell])
    inert(nb)
    assert "<img" not in nb.cells[0].source and "**answer**" in nb.cells[0].source
    assert nb.cells[1].source == "`a < b` is *fine*"  # no tag: left as written
    assert "<script" not in nb.cells[2].source
    html, js, bad_svg, good_svg = (o["data"] for o in cell.outputs)
    assert "<b>ok</b>" in html["text/html"] and "<script" not in html["text/html"]
    assert "application/javascript" not in js and "removed" in js["text/plain"]
    assert "<svg" not in bad_svg["image/svg+xml"]
    assert good_svg["image/svg+xml"] == "<svg><circle r='1'/></svg>"

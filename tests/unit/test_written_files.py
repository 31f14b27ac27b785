"""Files a notebook writes while graded: collected in the container, kept beside the graded
notebook on the host, and never anywhere else (no absolute path, no `..`, no link followed,
never over the notebooks or timestamp.txt), within their caps."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from graders.execution import Execution
from graders.preprocessor import SandboxedExecute, safe_relpath, write_files, written_files
from tests.unit.incontainer import runner as _runner


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("rel", ["/etc/passwd", "../x", "a/../../x", "./a", "a/./b", "a//b",
                                 ".bashrc", "sub/.hidden", "a\\..\\b", "a\x00b", "a\nb", "",
                                 "a/", "x" * 256, None, 5])
def test_unsafe_names_are_refused(rel):
    assert safe_relpath(rel) is None


@pytest.mark.parametrize("rel", ["plot.png", "out/model.pt", "데이터/결과.csv", "a b.txt"])
def test_plain_relative_names_pass(rel):
    assert safe_relpath(rel) == rel


def test_files_land_inside_the_folder_and_nowhere_else(tmp_path):
    dest = tmp_path / "autograded" / "foo" / "ps1"
    dest.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    files = {"plot.png": b"png", "out/deep/model.pt": b"weights", "../escaped": b"x",
             "/tmp/abs": b"x", "a/../../escaped2": b"x"}
    written, refused = write_files(dest, files)
    assert sorted(written) == ["out/deep/model.pt", "plot.png"]
    assert sorted(refused) == ["../escaped", "/tmp/abs", "a/../../escaped2"]
    assert (dest / "plot.png").read_bytes() == b"png"
    assert (dest / "out" / "deep" / "model.pt").read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.rglob("*escaped*")) == []
    assert not any(p.name.startswith(".onelab-") for p in dest.rglob("*"))


def test_the_notebooks_and_timestamp_are_never_replaced(tmp_path):
    (tmp_path / "p1.ipynb").write_text("graded")
    (tmp_path / "timestamp.txt").write_text("2026-01-01")
    written, refused = write_files(tmp_path, {"p1.ipynb": b"forged", "p2.ipynb": b"forged",
                                              "timestamp.txt": b"2099-01-01",
                                              "sub/notes.ipynb": b"{}"})
    assert sorted(refused) == ["p1.ipynb", "p2.ipynb", "timestamp.txt"]
    assert written == ["sub/notes.ipynb"]  # a notebook it made in a folder is just a file
    assert (tmp_path / "p1.ipynb").read_text() == "graded"
    assert (tmp_path / "timestamp.txt").read_text() == "2026-01-01"
    assert not (tmp_path / "p2.ipynb").exists()


def test_links_are_never_written_through(tmp_path):
    dest, secret = tmp_path / "dest", tmp_path / "gradebook.db"
    dest.mkdir()
    secret.write_text("grades")
    (dest / "link.txt").symlink_to(secret)  # a link to a file
    (dest / "linkdir").symlink_to(tmp_path)  # a link to a folder, on the way to a file
    (dest / "hard.txt").hardlink_to(secret)  # a hard link: written by rename, not through
    written, refused = write_files(dest, {"link.txt": b"pwned", "linkdir/gradebook.db": b"pwned",
                                          "hard.txt": b"new"})
    assert sorted(refused) == ["link.txt", "linkdir/gradebook.db"]
    assert written == ["hard.txt"]
    assert secret.read_text() == "grades"
    assert (dest / "hard.txt").read_bytes() == b"new"
    assert (dest / "link.txt").is_symlink()


def test_the_hosts_caps_hold_whatever_the_reply_says(tmp_path):
    reply = {"written": {f"f{i}.txt": _b64(b"x" * 10) for i in range(5)}
             | {"big.bin": _b64(b"y" * 100), "../up": _b64(b"z"), "bad.txt": "not base64!"},
             "left_out": ["huge.bin"], "left_out_count": 1}
    files, notes = written_files(reply, max_files=3, max_bytes=50)
    assert sorted(files) == ["f0.txt", "f1.txt", "f2.txt"]  # big.bin sorts first, too big
    assert "4 file(s)" in notes[0] and "huge.bin" in notes[0] and "big.bin" in notes[0]
    assert "'../up'" in notes[1] and "'bad.txt'" in notes[1]
    assert written_files(None) == ({}, [])
    assert written_files({"written": ["not", "a", "dict"]}) == ({}, [])


def test_the_runner_sends_back_only_what_the_notebook_made_or_changed(tmp_path):
    collect = _runner()["written_files"]
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    inputs = {}
    for rel, data in (("data/given.csv", b"1,2\n"), ("helper.py", b"x = 1\n")):
        (work / rel).write_bytes(data)
        inputs[rel] = (hashlib.sha256(data).hexdigest(), len(data))
    (work / "helper.py").write_bytes(b"x = 2\n")  # changed by the notebook
    (work / "plot.png").write_bytes(b"png")
    (work / ".hidden").write_bytes(b"no")
    (work / ".cache").mkdir()
    (work / ".cache" / "c").write_bytes(b"no")
    (work / "link").symlink_to("/etc/passwd")
    os.mkfifo(work / "fifo")
    (work / "big.bin").write_bytes(b"b" * 5000)
    written, left_out = collect(str(work), inputs, 10, 1000)
    assert {k: base64.b64decode(v) for k, v in written.items()} == {
        "helper.py": b"x = 2\n", "plot.png": b"png"}
    assert left_out == ["big.bin"]
    written, left_out = collect(str(work), inputs, 1, 1000)
    assert list(written) == ["helper.py"] and sorted(left_out) == ["big.bin", "plot.png"]


class _Fake(SandboxedExecute):
    """The host's side of a run, with the container's reply given."""

    reply: Execution

    def execute(self, payload, files, kernel, tests):
        return self.reply


def test_the_preprocessor_writes_the_files_beside_the_graded_notebook(tmp_path):
    nb = new_notebook(cells=[new_code_cell("open('plot.png', 'wb').write(b'png')")])
    (tmp_path / "p1.ipynb").write_text("{}")
    pp = _Fake(max_written_files=1, report_dir=str(tmp_path / "reports"))
    pp.reply = Execution("ok", cells=[{"outputs": [], "execution_count": 1, "executed": True}],
                         files={"written": {"plot.png": _b64(b"png"), "zz.txt": _b64(b"z")},
                                "left_out": [], "left_out_count": 0})
    resources = {"metadata": {"path": str(tmp_path)},
                 "nbgrader": {"student": "foo", "notebook": "p1"}}
    pp.preprocess(nb, resources)
    assert (tmp_path / "plot.png").read_bytes() == b"png"
    assert not (tmp_path / "zz.txt").exists()  # over this grader's cap of one file
    # the person grading sees what was left out, in the graded notebook and the run's notes
    assert "zz.txt" in nb.cells[0].outputs[-1]["text"]
    report = (tmp_path / "reports" / "foo" / "p1.json").read_text()
    assert '"flagged"' in report and "zz.txt" in report and '"plot.png"' in report


def test_the_runner_stops_looking_after_its_scan_budget(tmp_path):
    ns = _runner()
    ns["MAX_SCANNED"] = 5
    for i in range(3):
        (tmp_path / f"d{i}").mkdir()
        for j in range(3):
            (tmp_path / f"d{i}" / f"f{j}").write_bytes(b"x")
    written, left_out = ns["written_files"](str(tmp_path), {}, 100, 1000)
    assert sorted(written) == ["d0/f0", "d0/f1", "d0/f2"]  # the top and d0: 5 entries
    assert left_out == ["..."]

"""Image tags follow their build inputs: any change rebuilds, no change reuses."""

import shutil

from images import table
from onelab.settings import load


def test_tag_changes_with_inputs(tmp_path, monkeypatch):
    s = load(path=None, environ={})
    before = table.tag("learner", s)
    assert before == table.tag("learner", s)  # stable
    assert table.tag("learner-gpu", s) != before
    torch_newer = load(path=None, environ={"ONELAB_IMAGES__TORCH": "torch==2.14.1"})
    assert table.tag("learner", torch_newer) != before
    copy = tmp_path / "base"
    shutil.copytree(table.TABLE["base"].directory, copy)
    (copy / "packages.txt").write_text((copy / "packages.txt").read_text() + "git\n")
    monkeypatch.setitem(table.TABLE, "base", table.ImageSpec("base", copy, None))
    assert table.tag("learner", s) != before  # a base change reaches the learner tag
    assert "git" in table.debian_packages()


def test_tag_changes_with_any_locked_version(tmp_path, monkeypatch):
    """Two builds with one tag hold the same packages: a transitive pin is an input too."""
    s = load(path=None, environ={})
    before = table.tag("learner", s)
    copy = tmp_path / "learner"
    shutil.copytree(table.TABLE["learner"].directory, copy)
    lock = copy / "requirements.lock"
    assert "\nsoupsieve==" in lock.read_text()  # a dependency of a dependency, not a requirement
    lock.write_text(lock.read_text().replace("\nsoupsieve==", "\nsoupsieve==9", 1))
    monkeypatch.setitem(table.TABLE, "learner", table.ImageSpec("learner", copy, "base"))
    assert table.tag("learner", s) != before
    assert table.learner_lock() == lock


def test_spawner_image_setting_wins():
    s = load(path=None, environ={"ONELAB_SPAWNER__IMAGE": "myorg/course:1"})
    assert table.learner_image(s) == "myorg/course:1"

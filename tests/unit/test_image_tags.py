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
    monkeypatch.setitem(table.TABLE, "learner", table.ImageSpec("learner", copy, "base",
                                                              lock="requirements.lock"))
    assert table.tag("learner", s) != before
    assert table.learner_lock() == lock


def test_each_variant_tag_follows_its_own_lock(tmp_path, monkeypatch):
    """A GPU lock change rebuilds the GPU image and only it; a CPU lock change only the CPU one."""
    s = load(path=None, environ={})
    cpu, gpu = table.tag("learner", s), table.tag("learner-gpu", s)
    copy = tmp_path / "learner"
    shutil.copytree(table.TABLE["learner"].directory, copy)
    for name in ("learner", "learner-gpu"):
        monkeypatch.setitem(table.TABLE, name, table.ImageSpec(
            name, copy, "base", gpu=table.TABLE[name].gpu, lock=table.TABLE[name].lock))
    assert (table.tag("learner", s), table.tag("learner-gpu", s)) == (cpu, gpu)  # same inputs
    gpu_lock = table.learner_lock(gpu=True)
    assert gpu_lock == copy / "requirements-gpu.lock"
    assert "\nnvidia-cublas==" in gpu_lock.read_text()  # a CUDA wheel only the GPU image has
    gpu_lock.write_text(gpu_lock.read_text().replace("\nnvidia-cublas==", "\nnvidia-cublas==9", 1))
    assert table.tag("learner-gpu", s) != gpu
    assert table.tag("learner", s) == cpu
    gpu = table.tag("learner-gpu", s)
    cpu_lock = table.learner_lock()
    cpu_lock.write_text(cpu_lock.read_text().replace("\nsoupsieve==", "\nsoupsieve==9", 1))
    assert table.tag("learner", s) != cpu
    assert table.tag("learner-gpu", s) == gpu


def test_spawner_image_setting_wins():
    s = load(path=None, environ={"ONELAB_SPAWNER__IMAGE": "myorg/course:1"})
    assert table.learner_image(s) == "myorg/course:1"

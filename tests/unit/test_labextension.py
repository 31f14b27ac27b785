"""The Assignments panel's built JupyterLab extension is the build of the sources beside it,
and the learner image carries it (its tag changes when it does)."""

import json

from images import labextension, table
from onelab.settings import Settings


def test_built_extension_matches_its_sources():
    assert labextension.stamp() == labextension.source_hash(), (
        "images/labextension/ changed but built/ was not rebuilt: run images/labextension/build.sh")


def test_built_extension_is_loadable_as_jupyterlab_expects():
    meta = json.loads((labextension.BUILT / "package.json").read_text())
    assert meta["name"] == labextension.NAME
    load = meta["jupyterlab"]["_build"]["load"]
    assert (labextension.BUILT / load).is_file()


def test_learner_tag_follows_the_panel_and_the_catalogue(tmp_path, monkeypatch):
    s = Settings()
    before = table.inputs_hash("learner", s)
    fake = tmp_path / "built"
    fake.mkdir()
    (fake / "package.json").write_text("{}")
    monkeypatch.setattr(labextension, "BUILT", fake)
    assert table.inputs_hash("learner", s) != before
    assert table.inputs_hash("base", s) == table.inputs_hash("base", Settings())

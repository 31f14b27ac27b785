"""Grading and the regression take their GPUs from the learners' claims (hub/gpu/borrow.py):
a GPU a learner holds is never lent, the claim goes back when the work ends, and a claim left by
a command that died is taken back."""

from __future__ import annotations

import pytest

from hub.gpu.borrow import borrowed
from hub.gpu.claims import Claims
from hub.gpu.inventory import from_settings
from hub.gpu.policy import Policy
from onelab.errors import OneLabError
from onelab.settings import load


@pytest.fixture
def settings(tmp_path):
    config = tmp_path / "onelab.yaml"
    config.write_text("gpu:\n  inventory:\n    - {uuid: GPU-aaaa}\n    - {uuid: GPU-bbbb}\n")
    return load(path=config, environ={"ONELAB_STATE_DIR": str(tmp_path)})


def claims(settings) -> Claims:
    return Claims(settings.db_url, from_settings(settings.gpu))


def test_grading_gets_a_free_gpu_and_gives_it_back(settings):
    claims(settings).claim("amy", "", "deep", Policy("exclusive"))  # a learner holds one
    with borrowed(settings, "grade", "1") as gpus:
        assert gpus == "device=GPU-bbbb"
        assert {c.username for c in claims(settings).holders()} == {"amy", "onelab-grade"}
    assert [c.username for c in claims(settings).holders()] == ["amy"]


def test_nothing_free_is_a_clear_error_and_nothing_stays_claimed(settings):
    claims(settings).claim("amy", "", "deep", Policy("exclusive"))
    with pytest.raises(OneLabError, match="no GPU is free for grade"), \
            borrowed(settings, "grade", "2"):
        pass
    assert [c.username for c in claims(settings).holders()] == ["amy"]


def test_a_claim_of_a_dead_command_is_taken_back(settings):
    claims(settings).claim("onelab-regress", "999999999-0", "", Policy("exclusive"))
    claims(settings).claim("amy", "", "deep", Policy("exclusive"))
    with borrowed(settings, "regress", "1") as gpus:
        assert gpus.startswith("device=GPU-")


def test_no_inventory_leaves_the_request_as_given(tmp_path):
    s = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path)})
    with borrowed(s, "grade", "all") as gpus:
        assert gpus == "all"
    with borrowed(s, "grade", "none") as gpus:
        assert gpus == "none"

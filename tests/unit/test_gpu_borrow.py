"""Grading and the regression take their GPUs from the learners' claims (hub/gpu/borrow.py):
a GPU a learner holds is never lent, the claim goes back when the work ends, and a claim left by
a command that died is taken back."""

from __future__ import annotations

import os

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


def test_threads_of_one_process_never_share_a_borrowed_gpu(settings):
    """The exchange grades notebooks in threads of one process: each borrow is its own claim,
    so one run ending never gives back the GPU another still uses."""
    with borrowed(settings, "autograde", "1") as first, \
            borrowed(settings, "autograde", "1") as second:
        assert {first, second} == {"device=GPU-aaaa", "device=GPU-bbbb"}
        with pytest.raises(OneLabError, match="no GPU is free for autograde"), \
                borrowed(settings, "autograde", "1"):
            pass
    assert claims(settings).holders() == []


def test_a_restarted_hub_keeps_the_gpus_a_running_grade_holds(settings):
    from hub.gpu.borrow import live_borrows

    c = claims(settings)
    c.claim("onelab-regress", "999999999-dead-0", "", Policy("exclusive"))  # its process died
    with borrowed(settings, "grade", "1") as gpus:
        live = live_borrows(c)
        assert [server.split("-")[0] for _, server in live] == [str(os.getpid())]
        c.reconcile(live)  # what the hub does at its first spawn, with no learner running
        assert [x.username for x in c.holders()] == ["onelab-grade"]
        assert gpus == f"device={c.holders()[0].device_uuid}"


def test_the_formgraders_autograde_borrows_from_the_claims(settings, monkeypatch):
    """The exchange's execute (the formgrader's Autograde) with GPU claims: the sandbox gets
    the free GPU by UUID, and with none free the run stops with a message that says so."""
    import json

    from graders import sandbox
    from graders.execution import Execution
    from hub.courses import gpu_claims_env
    from hub.exchange_staff import run_in_sandbox

    s = settings.model_copy(update={"grading": settings.grading.model_copy(
        update={"gpus": "1"})})
    env = gpu_claims_env(s)
    assert gpu_claims_env(settings) == {}  # grading asks for no GPU: the exchange needs none
    gpu_claims = json.loads(env["EXCHANGE_GPU_CLAIMS"])
    seen = []

    def execute(nb, files, image, limits, **kw):  # the sandbox itself is tested in grading/
        seen.append(limits.gpus)
        return Execution("ok", "")

    monkeypatch.setattr(sandbox, "execute", execute)
    grading = {"image": "course-image", "limits": s.grading.limits().model_dump()}
    claims(settings).claim("amy", "", "deep", Policy("exclusive"))
    assert run_in_sandbox(grading, gpu_claims, {"cells": []}, {}, "python3", [])["status"] == "ok"
    assert seen == ["device=GPU-bbbb"]
    claims(settings).claim("ben", "", "deep", Policy("exclusive"))
    with pytest.raises(OneLabError, match=r"no GPU is free for autograde \(2 of 2 held\)"):
        run_in_sandbox(grading, gpu_claims, {"cells": []}, {}, "python3", [])
    assert seen == ["device=GPU-bbbb"]

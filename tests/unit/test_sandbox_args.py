"""The grading container's docker arguments: the locks a submission runs under."""

from __future__ import annotations

import pytest

from graders.grade import Options
from graders.sandbox import docker_args
from onelab.errors import SettingsError
from onelab.settings import GradingLimits, GradingSettings


def _opt(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def test_every_lock_is_in_the_arguments():
    args = docker_args("n", "img", GradingLimits(memory="512M", pids=64, scratch="16m"),
                       cpuset="1")
    assert _opt(args, "--network") == "none" and "--read-only" in args
    assert _opt(args, "--memory") == _opt(args, "--memory-swap") == "512M"
    assert _opt(args, "--pids-limit") == "64" and _opt(args, "--cpuset-cpus") == "1"
    assert _opt(args, "--user") == "1000:1000" and _opt(args, "--cap-drop") == "ALL"
    assert "size=16M" in _opt(args, "--tmpfs")
    assert not any("docker.sock" in a for a in args) and "-v" not in args
    assert "--gpus" not in args


@pytest.mark.parametrize("gpus, arg", [("all", "all"), ("2", "2"), ("device=0,1", '"device=0,1"')])
def test_gpus_reach_docker(gpus, arg):
    opts = Options.from_settings(GradingSettings(gpus=gpus), "img")
    assert _opt(docker_args("n", "img", opts.limits), "--gpus") == arg


def test_command_line_overrides_settings_only_where_given():
    opts = Options.from_settings(GradingSettings(memory="2G", cell_timeout=9), "img",
                                 memory=None, cell_timeout=30)
    assert (opts.limits.memory, opts.limits.cell_timeout, opts.image) == ("2G", 30, "img")


def test_a_bad_override_names_the_limit():
    with pytest.raises(SettingsError, match="grading limit memory"):
        Options.from_settings(GradingSettings(), "img", memory="lots")
    with pytest.raises(SettingsError, match="grading limit workers"):  # not a limit
        Options.from_settings(GradingSettings(), "img", workers=3)


def test_one_limits_model_everywhere():
    """The settings' grading section is the limits model plus image and workers: nothing of the
    sandbox is declared a second time."""
    assert set(GradingSettings.model_fields) - set(GradingLimits.model_fields) == {"image",
                                                                                   "workers"}
    assert GradingLimits() == GradingSettings().limits()

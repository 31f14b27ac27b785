"""Docker through one door: only onelab/dockerdoor.py imports Docker's SDK or runs its CLI, and
every container's lockdown comes from one Policy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from onelab import dockerdoor
from onelab.policy import Mount, Policy

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["onelab", "hub", "graders", "regress", "images", "onelab_cli"]
DOOR = REPO / "onelab" / "dockerdoor.py"
# an import of the SDK, or a command line that starts with the docker CLI
SDK = re.compile(r"^\s*(import docker\b|from docker\b)", re.MULTILINE)
CLI = re.compile(r"""[\[(]\s*["']docker["']\s*,""")


def test_only_the_door_imports_docker_or_runs_its_cli():
    offenders = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            if path == DOOR:
                continue
            text = path.read_text(encoding="utf-8")
            if SDK.search(text) or CLI.search(text):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_every_container_gets_the_same_lockdown_whichever_way_it_starts():
    p = Policy(role="grader", image="img", memory="512m", pids=64, network="none",
               tmpfs=(("/scratch", "size=16m"),), stdin=True)
    args = dockerdoor.run_args(p)
    kw = dockerdoor.run_kwargs(p)
    spawner = dockerdoor.spawner_settings(p)["extra_host_config"]
    assert "--read-only" in args and args[args.index("--cap-drop") + 1] == "ALL"
    assert args[args.index("--memory") + 1] == args[args.index("--memory-swap") + 1] == "512m"
    assert kw["cap_drop"] == spawner["cap_drop"] == ["ALL"]
    assert kw["security_opt"] == spawner["security_opt"] == ["no-new-privileges"]
    assert kw["read_only"] is spawner["read_only"] is True
    assert kw["memswap_limit"] == spawner["memswap_limit"] == "512m"
    assert kw["pids_limit"] == spawner["pids_limit"] == 64
    assert kw["labels"]["onelab.role"] == "grader" and "--label" in args


@pytest.mark.parametrize("source", ["/var/run/docker.sock", "/run/docker.sock", "/"])
def test_no_container_ever_gets_the_docker_socket(source):
    p = Policy(role="x", image="img", mounts=(Mount(source, "/sock"),))
    for build in (dockerdoor.run_args, dockerdoor.run_kwargs, dockerdoor.spawner_settings):
        with pytest.raises(Exception, match="never gets"):
            build(p)


def test_gpus_become_device_requests_or_the_cli_flag():
    p = Policy(role="grader", image="img", gpus="device=0,1")
    args = dockerdoor.run_args(p)
    assert args[args.index("--gpus") + 1] == '"device=0,1"'
    assert dockerdoor.device_requests("2") == [{"count": 2, "capabilities": [["gpu"]]}]
    assert dockerdoor.device_requests("none") == []

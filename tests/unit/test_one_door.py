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


def test_a_swarm_service_gets_the_same_lockdown_and_limits():
    p = Policy(role="learner", image="onelab/learner:x", user="1000:1000", memory="2G",
               cpus=1.5, pids=300, network="learners",
               tmpfs=(("/tmp", "size=1g,mode=1777"),),
               mounts=(Mount("home-ann", "/home/learner", read_only=False),
                       Mount("datasets", "/home/learner/datasets")),
               labels=(("onelab.user", "ann"),))
    t = dockerdoor.service_spec(p, args=["jupyterhub-singleuser"], env={"A": "1"},
                                constraints=["node.id==n1"])
    cs = t["ContainerSpec"]
    assert cs["User"] == "1000:1000" and cs["ReadOnly"] is True
    assert cs["CapabilityDrop"] == ["ALL"] and "CapabilityAdd" not in cs
    assert cs["Labels"] == {"onelab.role": "learner", "onelab.user": "ann"}
    assert "A=1" in cs["Env"]
    assert "OMP_NUM_THREADS=1" in cs["Env"]
    mounts = {m["Target"]: m for m in cs["Mounts"]}
    assert mounts["/home/learner"]["Type"] == "volume" and not mounts["/home/learner"]["ReadOnly"]
    assert mounts["/home/learner/datasets"]["ReadOnly"] is True
    assert mounts["/tmp"]["TmpfsOptions"] == {"SizeBytes": 1024 ** 3, "Mode": 0o1777}
    assert t["Resources"]["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 2 * 1024 ** 3,
                                        "Pids": 300}
    assert t["RestartPolicy"]["Condition"] == "none"
    assert t["Placement"]["Constraints"] == ["node.id==n1"]
    assert t["Networks"] == [{"Target": "learners"}]

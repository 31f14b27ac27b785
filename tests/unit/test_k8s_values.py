"""An operator outgrows one server: `onelab k8s values` writes Zero to JupyterHub values from
the same settings and courses (hub/k8s_values.py). The objects those values make are checked
against the Kubernetes API's schemas, and the values are checked for what they must carry."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from hub import k8s_values
from hub.courses import course_specs
from images.table import gpu_learner_image, learner_image
from onelab.course import CourseGpu
from onelab.settings import load

ROOT = Path(__file__).resolve().parents[2]


def defaults(tmp_path):
    config = tmp_path / "onelab.yaml"
    config.write_text("{}\n")
    return load(path=config, environ={"ONELAB_STATE_DIR": str(tmp_path)})


@pytest.fixture
def settings(tmp_path):
    return defaults(tmp_path)


def make(settings, **gpu_by_course):
    courses = course_specs(settings)
    courses = [c.model_copy(update={"gpu": CourseGpu(**gpu_by_course[c.id])})
               if c.id in gpu_by_course else c for c in courses]
    return k8s_values.values(settings, courses), courses


def test_the_values_make_valid_kubernetes_objects(settings):
    v, courses = make(settings, **{"ai-foundations": {"policy": "exclusive"},
                                   "industry-aix": {"policy": "shared", "per_device": 4}})
    kinds = [o["kind"] for o in k8s_values.objects(v)]
    assert kinds.count("Pod") == 1 + len(courses)  # the default pod and one per course
    assert {"PersistentVolumeClaim", "NetworkPolicy", "Service"} <= set(kinds)
    assert k8s_values.check(v) == []


def test_a_wrong_field_is_named(settings):
    v, _ = make(settings)
    v["singleuser"]["extraContainerConfig"]["securityContext"]["readOnlyRootFs"] = True
    problems = k8s_values.check(v)
    assert problems[0].startswith("Pod jupyter-learner: spec.containers.0.securityContext:")
    assert "readOnlyRootFs" in problems[0]
    v, _ = make(settings)
    v["singleuser"]["networkPolicy"]["egress"][0]["ports"][0]["protocol"] = ["TCP"]
    assert [p.split(":")[0] for p in k8s_values.check(v)] == ["NetworkPolicy singleuser"]


def test_the_learner_pod_carries_the_same_lockdown_and_limits(settings):
    v, _ = make(settings)
    su = v["singleuser"]
    image = learner_image(settings)
    assert f"{su['image']['name']}:{su['image']['tag']}" == image
    assert su["uid"] == 1000 and su["fsGid"] == 1000
    assert su["memory"]["limit"] == settings.spawner.mem_limit
    assert su["cpu"]["limit"] == settings.spawner.cpu_limit
    assert su["allowPrivilegeEscalation"] is False
    sc = su["extraContainerConfig"]["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # no Kubernetes API token in a learner's pod (on one server: no Docker socket)
    assert su["extraPodConfig"]["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m for m in su["storage"]["extraVolumeMounts"]}
    assert mounts["/home/learner/datasets"]["readOnly"] is True
    assert "/tmp" in mounts
    assert su["storage"]["homeMountPath"] == "/home/learner"
    pod = k8s_values.objects(v)[0]
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits["memory"] == "2Gi"  # OneLab's 2G is 2 GiB, as on Docker
    assert su["extraEnv"]["ONELAB_PREWARM"] == ",".join(settings.spawner.prewarm)


def test_learners_reach_neither_each_other_nor_the_internet(settings):
    np = make(settings)[0]["singleuser"]["networkPolicy"]
    assert np["enabled"]
    rules = np["egressAllowRules"]
    assert not rules["privateIPs"] and not rules["cloudMetadataServer"]
    assert rules["nonPrivateIPs"] is (not settings.spawner.network_internal)
    # the only extra way out: the exchange, on the hub's pod
    assert np["egress"] == [{"to": [{"podSelector": {"matchLabels": {"component": "hub"}}}],
                             "ports": [{"port": settings.hub.exchange_port, "protocol": "TCP"}]}]


def test_each_course_is_a_profile_with_its_gpu_policy(settings):
    v, courses = make(settings, **{"ai-foundations": {"policy": "exclusive"},
                                   "industry-aix": {"policy": "shared", "per_device": 4},
                                   "onelab-101": {"policy": "mig"}})
    by = {p["slug"]: p for p in v["singleuser"]["profileList"]}
    assert set(by) == {c.id for c in courses}
    gpu_image = gpu_learner_image(settings)
    ex = by["ai-foundations"]["kubespawner_override"]
    assert ex["extra_resource_limits"] == {"nvidia.com/gpu": "1"} and ex["image"] == gpu_image
    sh = by["industry-aix"]["kubespawner_override"]
    assert sh["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert sh["environment"] == {"ONELAB_GPU_MEMORY_FRACTION": "0.25"}
    assert by["onelab-101"]["kubespawner_override"]["extra_resource_limits"] == {
        settings.k8s.mig_resource: "1"}
    pods = {o["metadata"]["name"]: o for o in k8s_values.objects(v) if o["kind"] == "Pod"}
    assert pods["jupyter-learner-ai-foundations"]["spec"]["containers"][0]["resources"][
        "limits"]["nvidia.com/gpu"] == "1"
    # a CPU course keeps the learner image and asks for no GPU
    cpu = make(settings)[0]["singleuser"]["profileList"][0]["kubespawner_override"]
    assert cpu == {"image": learner_image(settings)}


def test_a_learner_sees_only_their_courses_profiles(settings):
    v, _ = make(settings)
    c = types.SimpleNamespace(KubeSpawner=types.SimpleNamespace(
        profile_list=v["singleuser"]["profileList"]))
    exec(v["hub"]["extraConfig"]["onelab-profiles"], {"c": c})  # noqa: S102 - as the chart runs it
    pick = c.KubeSpawner.profile_list

    def spawner(*groups):
        grp = [types.SimpleNamespace(name=g) for g in groups]
        return types.SimpleNamespace(user=types.SimpleNamespace(groups=grp))

    mine = pick(spawner("industry-aix-learners", "other"))
    assert [p["slug"] for p in mine] == ["industry-aix"] and mine[0]["default"] is True
    both = pick(spawner("onelab-101-staff", "ai-foundations-learners"))
    assert [p["slug"] for p in both] == ["ai-foundations", "onelab-101"]
    assert [p["default"] for p in both] == [True, False]
    assert pick(spawner()) == []


def test_the_hub_carries_auth_groups_culler_and_services(settings):
    v, courses = make(settings)
    cfg = v["hub"]["config"]
    assert cfg["JupyterHub"]["authenticator_class"] == "hub.auth.LocalAccountsAuthenticator"
    assert cfg["LocalAccountsAuthenticator"]["max_failures"] == settings.auth.lockout.max_failures
    assert cfg["JupyterHub"]["admin_access"] is False
    groups = cfg["JupyterHub"]["load_groups"]
    for course in courses:
        assert groups[f"{course.id}-staff"]["users"] == sorted(course.staff())
    assert v["cull"] == {"enabled": True, "timeout": settings.culler.timeout,
                         "every": settings.culler.every, "users": False,
                         "removeNamedServers": False}
    services = v["hub"]["services"]
    assert services["onelab-exchange"]["url"] == f"http://hub:{settings.hub.exchange_port}"
    assert v["hub"]["loadRoles"]["admin"] == {"services": ["onelab-admin"]}
    assert "access:services!service=onelab-exchange" in v["hub"]["loadRoles"]["user"]["scopes"]
    assert ("onelab-classes" in services) == any(c.sessions for c in courses)


def test_secrets_are_never_written(tmp_path):
    config = tmp_path / "onelab.yaml"
    config.write_text(yaml.safe_dump({"hub": {"db_url": "postgresql://onelab:pg-secret@db:5432/x"},
                                      "auth": {"kind": "oauth", "oauth": {
                                          "client_id": "id", "client_secret": "oauth-secret",
                                          "authorize_url": "https://idp/a",
                                          "token_url": "https://idp/t",
                                          "userdata_url": "https://idp/u"}}}))
    s = load(path=config, environ={"ONELAB_STATE_DIR": str(tmp_path)})
    v, _ = make(s)
    text = yaml.safe_dump(v)
    assert "pg-secret" not in text and "oauth-secret" not in text
    assert v["hub"]["db"] == {"type": "postgres", "url": "postgresql://onelab@db:5432/x",
                              "password": k8s_values.SECRET}
    assert v["hub"]["config"]["GenericOAuthenticator"]["client_secret"] == k8s_values.SECRET
    assert v["hub"]["config"]["JupyterHub"]["authenticator_class"] == "generic-oauth"


# Zero to JupyterHub's values (its documented configuration reference; the chart's own schema
# cannot be fetched offline): every key the values set must be one of these. Below a key
# ending in "*" anything goes (JupyterHub's config, Kubernetes objects, dicts of names).
Z2JH_KEYS = {
    "hub.image.name", "hub.image.tag", "hub.db.type", "hub.db.url", "hub.db.password",
    "hub.db.pvc.storage", "hub.config*", "hub.loadRoles*", "hub.services*",
    "hub.service.extraPorts*", "hub.networkPolicy.enabled", "hub.networkPolicy.ingress*",
    "hub.extraConfig*", "proxy.service.type",
    "singleuser.image.name", "singleuser.image.tag", "singleuser.image.pullPolicy",
    "singleuser.uid", "singleuser.fsGid", "singleuser.cmd", "singleuser.defaultUrl",
    "singleuser.startTimeout", "singleuser.cpu.limit", "singleuser.cpu.guarantee",
    "singleuser.memory.limit", "singleuser.memory.guarantee",
    "singleuser.allowPrivilegeEscalation", "singleuser.extraEnv*",
    "singleuser.storage.type", "singleuser.storage.capacity", "singleuser.storage.homeMountPath",
    "singleuser.storage.dynamic.storageClass", "singleuser.storage.extraVolumes*",
    "singleuser.storage.extraVolumeMounts*", "singleuser.extraContainerConfig*",
    "singleuser.extraPodConfig*", "singleuser.networkPolicy.enabled",
    "singleuser.networkPolicy.egress*",
    *(f"singleuser.networkPolicy.egressAllowRules.{k}" for k in (
        "cloudMetadataServer", "dnsPortsCloudMetadataServer", "dnsPortsKubeSystemNamespace",
        "dnsPortsPrivateIPs", "nonPrivateIPs", "privateIPs")),
    "singleuser.profileList*", "cull.enabled", "cull.timeout", "cull.every", "cull.users",
    "cull.removeNamedServers", "scheduling.userScheduler.enabled",
    "scheduling.podPriority.enabled", "scheduling.userPlaceholder.enabled",
    "scheduling.userPlaceholder.replicas", "prePuller.hook.enabled",
    "prePuller.continuous.enabled", "ingress.enabled", "ingress.hosts*",
}


def paths(d, prefix=""):
    for k, v in d.items():
        p = f"{prefix}{k}"
        if f"{p}*" in Z2JH_KEYS:
            yield p
        elif isinstance(v, dict) and v:
            yield from paths(v, p + ".")
        else:
            yield p


def test_every_key_is_one_the_chart_knows(tmp_path):
    config = tmp_path / "onelab.yaml"
    config.write_text("hub:\n  tls_hostnames: [class.example.org]\nk8s:\n  storage_class: fast\n")
    v, _ = make(load(path=config, environ={"ONELAB_STATE_DIR": str(tmp_path)}))
    unknown = [p for p in paths(v) if p not in Z2JH_KEYS and f"{p}*" not in Z2JH_KEYS]
    assert unknown == []
    assert v["ingress"]["hosts"] == ["class.example.org"]
    assert v["singleuser"]["storage"]["dynamic"] == {"storageClass": "fast"}


def test_onelab_k8s_values_writes_checked_values(tmp_path):
    out = tmp_path / "values.yaml"
    r = subprocess.run([str(Path(sys.executable).parent / "onelab"), "k8s", "values", "--out",
                        str(out)], check=False, capture_output=True, text=True, cwd=ROOT,
                       env={"ONELAB_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
                            "LANG": "en_US.UTF-8"})
    assert r.returncode == 0, r.stderr
    assert "checked against the Kubernetes 1.31.0 schemas" in r.stderr
    written = yaml.safe_load(out.read_text(encoding="utf-8"))
    s = defaults(tmp_path)
    assert written == k8s_values.values(s, course_specs(s))


@pytest.mark.parametrize(("size", "quantity"), [("2G", "2Gi"), ("512M", "512Mi"),
                                                ("1536M", "1536Mi"), ("10G", "10Gi")])
def test_sizes_become_binary_quantities(size, quantity):
    assert k8s_values.quantity(size) == quantity

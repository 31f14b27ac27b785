"""Zero to JupyterHub Helm values from OneLab's settings and course specs (`onelab k8s values`).

When one GPU server is outgrown, the same classroom runs on a Kubernetes cluster with the
Zero to JupyterHub chart (z2jh, KubeSpawner). This module writes the chart's values from what
OneLab already knows, so the two never drift apart:

- the learner image and its limits, home and datasets, the same lockdown as the Docker
  spawner (non-root, no privilege escalation, read-only root with a small /tmp, no
  capabilities, no Kubernetes API token in the pod: the cluster's Docker socket);
- one KubeSpawner profile per course, with the course's image and GPU policy as
  ``nvidia.com/gpu`` (or a MIG resource) limits, shown only to that course's learners and staff;
- the network policy (learners reach the hub and DNS, not each other, nor the internet when
  ``spawner.network_internal``), the idle culler, scheduling and placeholders;
- the hub's configuration: authentication (the same ``configure_auth`` as on one server),
  course groups and staff roles, and OneLab's services.

Secrets (the OAuth client secret, a PostgreSQL password) are never written: the values say
where to give them (docs/kubernetes.md). Everything here is plain data: it creates nothing.
"""

from __future__ import annotations

import textwrap
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from traitlets.config import Config

from hub.courses import EXCHANGE_SERVICE, SERVER_TOKEN_SCOPES, groups
from hub.gpu.policy import Policy
from hub.spawner import HOME
from images.table import course_image, gpu_learner_image, learner_image
from onelab.course import Course
from onelab.settings import Settings, size_bytes

HUB_HOME = "/srv/jupyterhub"
"""The chart's hub volume (its sqlite-pvc): the hub database and the exchange live there."""
SECRET = "<set with --set or a Secret; never written by onelab>"
LEARNER_UID = 1000


def quantity(size: str) -> str:
    """OneLab's sizes count in powers of 1024 (2G = 2 GiB), as Docker and KubeSpawner do; a
    Kubernetes quantity says so with Ki/Mi/Gi/Ti."""
    units = ["", "Ki", "Mi", "Gi", "Ti"]
    n = size_bytes(size)
    i = 0
    while i < len(units) - 1 and n % 1024 == 0 and n:
        n //= 1024
        i += 1
    return f"{n}{units[i]}"


def image_ref(ref: str, registry: str) -> dict[str, str]:
    """An image reference as the chart wants it (name, tag), pushed under ``registry``."""
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    if registry:
        name = f"{registry.rstrip('/')}/{name.rsplit('/', 1)[-1]}"
    return {"name": name, "tag": tag}


def _plain(value: Any) -> Any:
    """A traitlets Config as YAML-able data: classes by import path, sets as sorted lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return value


def _db(settings: Settings) -> tuple[dict[str, Any], str]:
    """The chart's hub.db, and the URL OneLab's local accounts use (the same database)."""
    url = settings.hub.db_url or ""
    if url.startswith(("postgresql", "postgres")):
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{parts.username}@{host}" if parts.username else host
        netloc += f":{parts.port}" if parts.port else ""
        clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        return {"type": "postgres", "url": clean, "password": SECRET}, clean
    return {"type": "sqlite-pvc", "pvc": {"storage": "1Gi"}}, \
        f"sqlite:///{HUB_HOME}/jupyterhub.sqlite"


def hub_config(settings: Settings, courses: list[Course], db_url: str) -> dict[str, Any]:
    """hub.config: the same authentication code as on one server, then the course groups."""
    from hub.auth import configure_auth

    k8s = settings.model_copy(deep=True)
    k8s.hub.db_url = db_url
    c = Config()
    configure_auth(c, k8s)
    c.JupyterHub.load_groups = groups(courses)
    c.JupyterHub.admin_access = False  # an admin does not get into learners' servers
    # as on one server (hub/courses.py): every user may call the exchange, and a learner's
    # server token can do that and nothing more
    c.KubeSpawner.server_token_scopes = SERVER_TOKEN_SCOPES
    roles = [*(c.JupyterHub.get("load_roles") or []), {
        "name": "user", "scopes": ["self", f"access:services!service={EXCHANGE_SERVICE}"]},
        {"name": "admin", "services": ["onelab-admin"]}]
    out = _plain({k: dict(v) for k, v in c.items()})
    out["JupyterHub"].pop("load_roles", None)
    if "GenericOAuthenticator" in out:
        out["GenericOAuthenticator"]["client_secret"] = SECRET
    return {"config": out, "roles": _plain(roles)}


def gpu_override(settings: Settings, course: Course) -> dict[str, Any]:
    """KubeSpawner overrides for a course's GPU policy: the GPU image and the device plugin's
    resource. Shared GPUs need the NVIDIA device plugin's time-slicing (replicas = per_device),
    each learner capped to its share of memory as on one server."""
    policy = Policy.of(settings.gpu, course.gpu)
    if policy.kind == "none":
        return {}
    out: dict[str, Any] = {
        "image": gpu_learner_image_ref(settings),
        "extra_resource_limits": {settings.k8s.mig_resource if policy.kind == "mig"
                                  else "nvidia.com/gpu": "1"},
    }
    if policy.memory_fraction:
        out["environment"] = {"ONELAB_GPU_MEMORY_FRACTION": str(policy.memory_fraction)}
    return out


def gpu_learner_image_ref(settings: Settings) -> str:
    ref = image_ref(gpu_learner_image(settings), settings.k8s.registry)
    return f"{ref['name']}:{ref['tag']}"


def gpu_words(policy: Policy) -> str:
    if policy.kind == "none":
        return "CPU"
    if policy.kind == "shared":
        return f"GPU (shared by {policy.per_device}) · GPU ({policy.per_device}명 공유)"
    return f"GPU ({policy.kind}) · GPU ({'전용' if policy.kind == 'exclusive' else 'MIG'})"


def profiles(settings: Settings, courses: list[Course]) -> list[dict[str, Any]]:
    """One KubeSpawner profile per course (hub.extraConfig shows each only to its course)."""
    out = []
    for course in courses:
        ref = image_ref(course_image(course.image, settings), settings.k8s.registry)
        override: dict[str, Any] = {"image": f"{ref['name']}:{ref['tag']}"}
        override.update(gpu_override(settings, course))
        out.append({
            "display_name": f"{course.title.ko} · {course.title.en}",
            "slug": course.id,
            "description": gpu_words(Policy.of(settings.gpu, course.gpu)),
            "kubespawner_override": override,
        })
    if out:
        out[0]["default"] = True
    return out


PROFILE_FILTER = textwrap.dedent("""\
    # OneLab: each course's profile only for that course's learners and staff (their groups,
    # hub.config.JupyterHub.load_groups); the first of theirs is the default.
    import copy as _copy

    _onelab_profiles = c.KubeSpawner.profile_list
    _onelab_profiles = list(_onelab_profiles) if isinstance(_onelab_profiles, list) else []

    def _onelab_profile_list(spawner):
        mine = {g.name for g in spawner.user.groups}
        out = [_copy.deepcopy(p) for p in _onelab_profiles
               if {p["slug"] + "-learners", p["slug"] + "-staff"} & mine]
        for i, p in enumerate(out):
            p["default"] = i == 0
        return out

    if _onelab_profiles:
        c.KubeSpawner.profile_list = _onelab_profile_list
""")


def services(settings: Settings, courses: list[Course]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """OneLab's services in the hub pod (the OneLab hub image has them), and the hub Service's
    extra ports they need. The exchange keeps its files on the hub's volume."""
    port = settings.hub.exchange_port
    svc: dict[str, Any] = {
        "onelab-admin": {},  # the chart makes its token; the admin role is its (loadRoles)
        EXCHANGE_SERVICE: {
            "url": f"http://hub:{port}",
            "command": ["python3", "-m", "hub.exchange_service"],
            "environment": {"EXCHANGE_ROOT": f"{HUB_HOME}/exchange",
                            **{f"ONELAB_EXCHANGE__{k.upper()}": str(v)
                               for k, v in settings.exchange.model_dump().items()}},
            "display": False,
        },
    }
    if any(course.sessions for course in courses):  # warms each course's sessions ahead
        svc["onelab-classes"] = {"command": ["python3", "-m", "hub.warmup_service"]}
    ports = [{"name": "exchange", "port": port, "targetPort": port}]
    return svc, ports


def values(settings: Settings, courses: list[Course]) -> dict[str, Any]:
    """The chart's values (a plain dict, dumped as YAML by `onelab k8s values`)."""
    s, k = settings.spawner, settings.k8s
    db, db_url = _db(settings)
    auth = hub_config(settings, courses, db_url)
    svc, ports = services(settings, courses)
    hub_image = image_ref(k.hub_image or f"onelab/hub:{version('onelab')}", k.registry)
    egress_hub_services = [{  # learners call the exchange (on the hub pod) as they call the hub
        "to": [{"podSelector": {"matchLabels": {"component": "hub"}}}],
        "ports": [{"port": settings.hub.exchange_port, "protocol": "TCP"}],
    }]
    singleuser: dict[str, Any] = {
        "image": {**image_ref(learner_image(settings), k.registry), "pullPolicy": "IfNotPresent"},
        "uid": LEARNER_UID,
        "fsGid": LEARNER_UID,
        "cmd": "jupyterhub-singleuser",
        "defaultUrl": "/lab",
        "startTimeout": s.start_timeout,
        "cpu": {"limit": s.cpu_limit, "guarantee": min(k.cpu_guarantee, s.cpu_limit)},
        "memory": {"limit": s.mem_limit, "guarantee": k.memory_guarantee},
        "allowPrivilegeEscalation": False,
        "extraEnv": {"ONELAB_ROLE": "learner", "ONELAB_PREWARM": ",".join(s.prewarm),
                     "ONELAB_LANG": settings.hub.language},
        "storage": {
            "type": "dynamic",
            "capacity": quantity(k.home_size),
            "homeMountPath": HOME,
            "dynamic": {"storageClass": k.storage_class} if k.storage_class else {},
            "extraVolumes": [
                {"name": "tmp", "emptyDir": {"medium": "Memory",
                                             "sizeLimit": quantity(s.tmp_size)}},
                {"name": "datasets", "persistentVolumeClaim": {
                    "claimName": k.datasets_claim, "readOnly": True}},
            ],
            "extraVolumeMounts": [
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "datasets", "mountPath": f"{HOME}/datasets", "readOnly": True},
            ],
        },
        "extraContainerConfig": {"securityContext": {
            "runAsNonRoot": True, "runAsUser": LEARNER_UID, "runAsGroup": LEARNER_UID,
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}},
        # no Kubernetes API token and no other services' addresses in a learner's pod
        "extraPodConfig": {"automountServiceAccountToken": False, "enableServiceLinks": False},
        "networkPolicy": {
            "enabled": True,
            "egress": egress_hub_services,
            "egressAllowRules": {
                "cloudMetadataServer": False,
                "dnsPortsCloudMetadataServer": False,
                "dnsPortsKubeSystemNamespace": True,
                "dnsPortsPrivateIPs": False,
                "nonPrivateIPs": not s.network_internal,
                "privateIPs": False,
            },
        },
        "profileList": profiles(settings, courses),
    }
    hub: dict[str, Any] = {
        "image": hub_image,
        "db": db,
        "config": auth["config"],
        "loadRoles": {r["name"]: {k2: v for k2, v in r.items() if k2 != "name"}
                      for r in auth["roles"]},
        "services": svc,
        "service": {"extraPorts": ports},
        "networkPolicy": {"enabled": True, "ingress": [{
            "from": [{"podSelector": {"matchLabels": {"component": "singleuser-server"}}}],
            "ports": [{"port": settings.hub.exchange_port, "protocol": "TCP"}],
        }]},
        "extraConfig": {"onelab-profiles": PROFILE_FILTER},
    }
    out: dict[str, Any] = {
        "hub": hub,
        "proxy": {"service": {"type": k.proxy_service_type}},
        "singleuser": singleuser,
        "cull": {"enabled": settings.culler.enabled, "timeout": settings.culler.timeout,
                 "every": settings.culler.every, "users": False, "removeNamedServers": False},
        "scheduling": {
            "userScheduler": {"enabled": True},
            "podPriority": {"enabled": True},
            # warm capacity before the bell (docs/classes.md): placeholders keep nodes ready
            "userPlaceholder": {"enabled": k.placeholders > 0, "replicas": k.placeholders},
        },
        "prePuller": {"hook": {"enabled": True}, "continuous": {"enabled": True}},
    }
    if settings.hub.tls_hostnames:
        out["ingress"] = {"enabled": True, "hosts": list(settings.hub.tls_hostnames)}
    return out


# -- checks -------------------------------------------------------------------------------------

KUBERNETES_VERSION = "1.31.0"
"""The Kubernetes API the objects are checked against (kubernetes-validate's schemas)."""


def objects(v: dict[str, Any]) -> list[dict[str, Any]]:
    """The Kubernetes objects these values make, as the chart and KubeSpawner build them from
    the values: one learner pod per course profile (home PVC, extra volumes and mounts, the
    container's security context, limits and requests, GPU resources), the home's PVC, the
    learners' and the hub's network policies and the hub's Service with its extra ports."""
    su = v["singleuser"]
    storage = su["storage"]

    def pod(name: str, override: dict[str, Any]) -> dict[str, Any]:
        image = override.get("image") or f"{su['image']['name']}:{su['image']['tag']}"
        env = {**su["extraEnv"], **override.get("environment", {})}
        limits = {"cpu": str(su["cpu"]["limit"]), "memory": quantity(su["memory"]["limit"]),
                  **override.get("extra_resource_limits", {})}
        requests = {"cpu": str(su["cpu"]["guarantee"]),
                    "memory": quantity(su["memory"]["guarantee"])}
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"jupyter-{name}",
                         "labels": {"component": "singleuser-server"}},
            "spec": {
                **su["extraPodConfig"],
                "securityContext": {"fsGroup": su["fsGid"]},
                "volumes": [{"name": "home", "persistentVolumeClaim": {
                    "claimName": f"claim-{name}"}}, *storage["extraVolumes"]],
                "containers": [{
                    "name": "notebook", "image": image,
                    "imagePullPolicy": su["image"]["pullPolicy"], "args": [su["cmd"]],
                    "env": [{"name": k, "value": str(x)} for k, x in env.items()],
                    "resources": {"limits": limits, "requests": requests},
                    "volumeMounts": [{"name": "home", "mountPath": storage["homeMountPath"]},
                                     *storage["extraVolumeMounts"]],
                    **su["extraContainerConfig"],
                }],
            },
        }

    out = [pod("learner", {})]
    out += [pod(f"learner-{p['slug']}", p["kubespawner_override"]) for p in su["profileList"]]
    pvc_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": storage["capacity"]}}}
    if storage["dynamic"].get("storageClass"):
        pvc_spec["storageClassName"] = storage["dynamic"]["storageClass"]
    out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "claim-learner"}, "spec": pvc_spec})
    out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "singleuser"},
                "spec": {"podSelector": {"matchLabels": {"component": "singleuser-server"}},
                         "policyTypes": ["Egress"], "egress": su["networkPolicy"]["egress"]}})
    hub = v["hub"]
    out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "hub"},
                "spec": {"podSelector": {"matchLabels": {"component": "hub"}},
                         "policyTypes": ["Ingress"], "ingress": hub["networkPolicy"]["ingress"]}})
    out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hub"},
                "spec": {"selector": {"component": "hub"},
                         "ports": [{"name": "hub", "port": 8081, "targetPort": 8081},
                                   *hub["service"]["extraPorts"]]}})
    return out


def check(v: dict[str, Any]) -> list[str]:
    """What is wrong with the objects these values make, against the Kubernetes API's schemas
    (strict: an unknown field is wrong too); empty when nothing is."""
    import kubernetes_validate

    problems = []
    for obj in objects(v):
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: {where}: {e.message}")
    return problems

"""OneLab's settings: one validated model, loaded from one YAML file plus environment overrides.

Layering (later wins): the defaults in this module < the settings file < ``ONELAB_*`` environment
variables. The file is ``$ONELAB_CONFIG`` if set, else ``./onelab.yaml`` if it exists, else
``/etc/onelab/onelab.yaml`` if it exists. An environment variable names a setting by its dotted
path with ``__`` for the dots, e.g. ``ONELAB_SPAWNER__MEM_LIMIT=4G`` sets ``spawner.mem_limit``;
its value is read as YAML, so ``ONELAB_HUB__ADMIN_USERS='[kim, lee]'`` is a list.
``ONELAB_CONFIG`` and ``ONELAB_LANG`` (the ``onelab`` command's language, onelab/i18n.py) are
not settings.

A wrong key or value raises :class:`SettingsError` with one line naming the key, the value, where
it came from and what is allowed. ``onelab settings`` prints this model as a reference.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from onelab.errors import SettingsError
from onelab.i18n import ENV_LANG, N_

ENV_PREFIX = "ONELAB_"
ENV_CONFIG = "ONELAB_CONFIG"
NOT_SETTINGS = (ENV_CONFIG, ENV_LANG)
"""ONELAB_ variables that are not settings."""
ROLE_NAMES = ["instructor"]
"""OneLab roles that settings may hand out; hub/roles.py defines their scopes."""
_SIZE = re.compile(r"^\d+(\.\d+)?[KMGT]?$")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")
"""Listen addresses that mean every interface of the machine."""


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost); a
    wildcard (0.0.0.0, ::) or any other address or name reaches beyond it."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _size(value: str) -> str:
    value = str(value).strip().upper()
    if not _SIZE.match(value):
        raise ValueError("must be a size such as 512M or 2G")
    return value


class Section(BaseModel):
    """A block of settings; unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HubSettings(Section):
    ip: str = Field("127.0.0.1", description="Address the public proxy listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the public proxy (the URL learners open).")
    proxy_api_port: int = Field(8001, ge=1, le=65535, description="Port of the proxy's REST API, on loopback.")
    hub_port: int = Field(
        8081, ge=1, le=65535,
        description="Port of the hub's API, bound on the learner network's gateway so containers reach it.",
    )
    exchange_port: int = Field(
        8082, ge=1, le=65535,
        description="Port of the nbgrader exchange service, on the learner network's gateway.",
    )
    formgrader_port: int = Field(
        8090, ge=1, le=65000,
        description="First loopback port of the per-course formgrader services (one each, the next free ones).",
    )
    base_url: str = Field("/", description="URL prefix of the whole platform.")
    db_url: str | None = Field(
        None, description="SQLAlchemy URL of the hub database; default SQLite in state_dir. "
        "Example: postgresql://onelab:secret@127.0.0.1:5432/onelab",
    )
    admin_users: list[str] = Field(default_factory=list, description="Usernames that are hub admins.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    language: Literal["ko", "en"] = Field(
        "ko", description="Language of the hub's pages for anyone who has not chosen one with "
        "the 한국어 / English switch (each person's choice is kept).",
    )
    tls_cert: Path | None = Field(
        None, description="The operator's TLS certificate (PEM, the full chain) for the public "
        "port. Default: none; on an address beyond loopback OneLab then makes its own, signed by "
        "a local CA kept in <state_dir>/tls/ (docs/https.md).",
    )
    tls_key: Path | None = Field(
        None, validate_default=True,
        description="The private key (PEM) of hub.tls_cert; set both or neither.",
    )
    tls_hostnames: list[str] = Field(
        default_factory=list, description="Names (or addresses) learners use to reach the hub: "
        "they go into the certificate OneLab makes, and the first is the host of the public URL.",
    )
    http_redirect_port: int | None = Field(
        None, ge=1, le=65535, validate_default=True,
        description="With HTTPS, a port (e.g. 80) on every interface that redirects plain HTTP "
        "to the https:// URL; default: none (plain HTTP gets no answer).",
    )

    @field_validator("base_url")
    @classmethod
    def _slashes(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with /")
        return v if v.endswith("/") else v + "/"

    @field_validator("db_url")
    @classmethod
    def _db(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(sqlite|postgresql(\+psycopg)?)://", v):
            raise ValueError("must start with sqlite:// or postgresql://")
        return v

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _readable(cls, v: Path | None) -> Path | None:
        if v is not None:
            if not v.is_file():
                raise ValueError("no such file")
            if not os.access(v, os.R_OK):
                raise ValueError("cannot be read")
        return v

    @field_validator("tls_key")
    @classmethod
    def _pair(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        cert = info.data.get("tls_cert")
        if v is None and cert is not None:
            raise ValueError("must be set with hub.tls_cert (its private key)")
        if v is not None and cert is None and "tls_cert" in info.data:
            raise ValueError("is set without hub.tls_cert (the certificate it belongs to)")
        return v

    @field_validator("tls_hostnames")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        out = []
        for name in v:
            name = str(name).strip().lower()
            try:
                ipaddress.ip_address(name)
            except ValueError:
                if not DNS_NAME.match(name):
                    raise ValueError(f"{name!r} is neither a DNS name nor an IP address") from None
            out.append(name)
        return out

    @field_validator("http_redirect_port")
    @classmethod
    def _redirect(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is None:
            return v
        if v in (info.data.get("port"), info.data.get("proxy_api_port")):
            raise ValueError("must differ from hub.port and hub.proxy_api_port")
        if is_loopback(info.data.get("ip", "")) and info.data.get("tls_cert") is None:
            raise ValueError("needs HTTPS (hub.ip beyond loopback, or hub.tls_cert)")
        return v

    @property
    def tls(self) -> bool:
        """HTTPS on the public port: always beyond loopback, on loopback with a certificate of
        the operator's. Plain HTTP is then refused there."""
        return self.tls_cert is not None or not is_loopback(self.ip)

    @property
    def public_host(self) -> str:
        """The host in the URL learners open: the first of hub.tls_hostnames, else hub.ip,
        else (listening on every interface) this machine's name."""
        if self.tls and self.tls_hostnames:
            return self.tls_hostnames[0]
        if self.ip in WILDCARD_HOSTS:
            return socket.gethostname().lower()
        return self.ip


class OAuthSettings(Section):
    """Generic OAuth2/OIDC (oauthenticator's GenericOAuthenticator) for online SSO."""

    client_id: str = ""
    client_secret: str = Field(
        "", description="A secret: `onelab settings` shows only whether it is set.")
    authorize_url: str = ""
    token_url: str = ""
    userdata_url: str = ""
    callback_url: str = Field("", description="Default: http://<hub.ip>:<hub.port>/hub/oauth_callback")
    scope: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    username_claim: str = "preferred_username"
    groups_claim: str = Field("groups", description="Claim in the user data that lists the user's groups.")
    allowed_groups: list[str] = Field(default_factory=list, description="Only members of these groups may log in.")
    admin_groups: list[str] = Field(default_factory=list, description="Members of these groups are hub admins.")
    group_roles: dict[str, list[str]] = Field(
        default_factory=dict,
        description="OneLab role -> groups whose members get it, e.g. {instructor: [ai-teachers]}.",
    )
    login_service: str = Field("SSO", description="Name shown on the login button.")

    @field_validator("group_roles")
    @classmethod
    def _roles_known(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = set(v) - set(ROLE_NAMES)
        if unknown:
            raise ValueError(f"names unknown role(s) {sorted(unknown)}; known: {ROLE_NAMES}")
        return v


class LockoutSettings(Section):
    """Login throttling of local accounts (hub/lockout.py): wrong passwords lock an account, and
    an address that tries many accounts, for a while; `onelab users locks|unlock` shows and lifts
    locks. Counts and locks are kept in the hub database, so a hub restart keeps them."""

    max_failures: int = Field(
        5, ge=0, le=1000, description="Wrong passwords for one account within `window` that "
        "lock it; 0 turns the account lock off.",
    )
    address_max_failures: int = Field(
        20, ge=0, le=100_000, description="Wrong passwords from one client address (any "
        "accounts) within `window` that lock the address; 0 turns it off. Right passwords "
        "never count, so a class behind one NAT address logging in at once is not locked.",
    )
    window: int = Field(
        900, ge=10, le=86_400, description="Seconds in which failures are counted (from the "
        "first one); older ones are forgotten.",
    )
    lock_time: int = Field(
        900, ge=10, le=86_400, description="Seconds of the first lock; each further lock "
        "within a day of the previous one lasts twice as long, up to `max_lock_time`.",
    )
    max_lock_time: int = Field(
        3600, ge=10, le=604_800, description="Longest lock, in seconds.",
    )

    @field_validator("max_lock_time")
    @classmethod
    def _at_least_lock_time(cls, v: int, info: Any) -> int:
        first = info.data.get("lock_time")
        if first is not None and v < first:
            raise ValueError(f"must be at least auth.lockout.lock_time ({first})")
        return v


class AuthSettings(Section):
    kind: Literal["local", "oauth"] = Field(
        "local", description="local: accounts kept in the hub database (offline classrooms); oauth: SSO."
    )
    min_password_length: int = Field(8, ge=6, le=128)
    lockout: LockoutSettings = Field(default_factory=LockoutSettings)
    oauth: OAuthSettings = Field(default_factory=OAuthSettings)


Backend = Literal["swarm", "docker"]
"""How learner servers run: a container on this Docker Engine, or a Docker Swarm service."""


class SpawnerSettings(Section):
    image: str | None = Field(None, description="Learner image; default: the one `onelab images build` makes.")
    gpus: str = Field(
        "none", description="GPUs per learner container: none, all, or a count such as 1. "
        "Anything but none selects the GPU image by default.",
    )
    container_prefix: str = Field(
        "onelab-learner", description="Learner containers are named <prefix>-<username>.",
    )
    backend: Backend = Field(
        default="docker", description="docker: each learner's server is a container on this Docker "
        "Engine. swarm: a Docker Swarm service (run `onelab swarm init` first), with the same "
        "lockdown, limits and homes (docs/swarm.md).",
    )
    network: str = Field("onelab-learners", description="Docker network of the learner containers.")
    swarm_subnet: str = Field(
        "10.213.0.0/24", description="With backend swarm: the learner network's subnet, fixed "
        "so the hub's address on it stays the same across Engine restarts.",
    )
    network_internal: bool = Field(
        True, description="Learner containers reach only the hub, not the outside world.",
    )
    host_firewall: bool = Field(
        True, description="On the host, learner containers reach only the hub's API and the "
        "exchange (iptables rules that `onelab up` installs and `onelab down` removes).",
    )
    mem_limit: str = "2G"
    cpu_limit: float = Field(1.0, gt=0, le=256)
    pids_limit: int = Field(512, ge=64, le=65536)
    tmp_size: str = Field("1G", description="Size of the learner's /tmp (a tmpfs; the root fs is read-only).")
    home_volume: str = Field(
        "onelab-home-{username}", description="Named volume per learner mounted as their home."
    )
    datasets_volume: str = Field(
        "onelab-datasets", description="Shared volume mounted read-only at ~/datasets."
    )
    start_timeout: int = Field(
        300, ge=10, description="Seconds a spawn may take (a whole class at once on few cores is slow).",
    )
    http_timeout: int = Field(
        180, ge=5, description="Seconds a started server may take to answer before the spawn fails.",
    )
    prewarm: list[str] = Field(
        default_factory=lambda: ["numpy", "pandas", "torch"], description="Modules imported "
        "in a kernel each learner server starts ahead, handed over as the learner's first "
        "kernel (images/learner/onelab/onelab_kernels.py); empty: no kernel is started ahead.",
    )
    parallel_starts: int = Field(
        0, ge=0, le=256, description="Learner servers starting at once; the others wait in a "
        "queue and see their place on the spawn page (hub/admission.py). 0: the host's cores, "
        "at least 2.",
    )
    queue_wait_limit: int = Field(
        1800, ge=0, le=86_400, description="Seconds a start may wait in that queue. The wait "
        "is not on start_timeout's clock: the hub allows start_timeout plus this.",
    )

    @property
    def starts_at_once(self) -> int:
        return self.parallel_starts or max(os.cpu_count() or 1, 2)

    @field_validator("swarm_subnet")
    @classmethod
    def _subnet(cls, v: str) -> str:
        try:
            net = ipaddress.ip_network(v)
        except ValueError:
            raise ValueError(f"not a subnet such as 10.213.0.0/24: {v!r}") from None
        if net.version != 4 or net.num_addresses < 16:
            raise ValueError("must be an IPv4 subnet with room for learners (/28 or larger)")
        return str(net)

    @field_validator("prewarm")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", m)]
        if bad:
            raise ValueError(f"not module names: {', '.join(map(repr, bad))}")
        return v

    @field_validator("mem_limit", "tmp_size", mode="before")
    @classmethod
    def _sizes(cls, v: str) -> str:
        return _size(v)

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, v: str) -> str:
        return gpus_value(v, devices=False)  # a count for Docker's device requests

    @field_validator("home_volume")
    @classmethod
    def _per_user(cls, v: str) -> str:
        if "{username}" not in v:
            raise ValueError("must contain {username}, or learners would share one home")
        return v


class ClassSettings(Section):
    """Warming a class before the bell (hub/warmup.py, `onelab class warm|cool`)."""

    warm_before: int = Field(
        600, ge=0, le=86_400, description="Seconds before a course session (course.yml "
        "`sessions:`) its learners' servers are started.",
    )
    warm_for: int = Field(
        180 * 60, ge=60, le=7 * 86_400, description="Seconds `onelab class warm` keeps a "
        "class from the idle culler when no --minutes is given.",
    )
    check_every: int = Field(
        30, ge=5, le=3600, description="Seconds between the scheduler's looks at the sessions.",
    )


class CullerSettings(Section):
    enabled: bool = Field(True, description="Stop idle learner servers (jupyterhub-idle-culler).")
    timeout: int = Field(3600, ge=60, description="Seconds of inactivity before a server is stopped.")
    every: int = Field(300, ge=10, description="Seconds between checks.")


class ImageSettings(Section):
    base_source: Literal["auto", "registry", "bootstrap"] = Field(
        "auto",
        description="registry: pull registry_base; bootstrap: debootstrap Debian from debian_mirror "
        "(offline path); auto: use registry_base if it is already present locally, else bootstrap.",
    )
    registry_base: str = "debian:bookworm-slim"
    debian_mirror: str = "http://deb.debian.org/debian"
    torch: str = Field("torch==2.13.0", description="Torch requirement of the CPU image.")
    torch_gpu: str = Field(
        "torch===2.13.0",
        description="Torch requirement of the GPU image. `===` matches the plain (CUDA) build "
        "only, never a local `+cpu` wheel.",
    )
    torch_index_url: str | None = Field(
        None, description="Extra index for the CPU torch wheel, e.g. PyTorch's CPU index.",
    )
    cache_dir: Path = Field(Path("/var/cache/onelab"), description="Wheelhouses and bootstrap rootfs.")


class GradingLimits(Section):
    """What one notebook being graded may use: the one model of the grading sandbox's limits.

    `grading.*` in the settings, `onelab grade`'s flags, the formgrader's nbgrader config and the
    exchange's "run this notebook" all hand one of these to graders.sandbox, validated here."""

    memory: str = Field("1G", description="Memory per submission's container.")
    cpus: float = Field(1.0, gt=0, le=256, description="CPUs per submission's container.")
    pids: int = Field(128, ge=16, le=65536, description="Processes and threads per submission's container.")
    scratch: str = Field("64M", description="Size of the writable /scratch tmpfs, the only writable place.")
    cell_timeout: int = Field(60, ge=1, description="Seconds one cell may run before it is interrupted.")
    notebook_timeout: int = Field(600, ge=1, description="Seconds one notebook may run in all.")
    max_output_bytes: int = Field(2_000_000, ge=1000, description="Output kept per notebook; more is cut.")
    gpus: str = Field(
        "none", description="GPUs per grading container: none, all, a count such as 1, or "
        "device=0,1 (Docker's --gpus).",
    )

    @field_validator("memory", "scratch", mode="before")
    @classmethod
    def _sizes(cls, v: str) -> str:
        return _size(v)

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, v: str) -> str:
        return gpus_value(v, devices=True)

    def limits(self, **overrides: Any) -> GradingLimits:
        """These limits (only them: a GradingSettings' other keys stay behind) with `overrides`
        (None: not given), validated; a bad override is an error naming it."""
        values = {k: getattr(self, k) for k in GradingLimits.model_fields}
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return GradingLimits(**values)
        except ValidationError as e:
            raise SettingsError("; ".join(
                f"grading limit {'.'.join(map(str, err['loc']))}: {err['msg']}"
                for err in e.errors())) from None


class GradingSettings(GradingLimits):
    """Sandbox of `onelab grade` and of nbgrader's own autograde in a OneLab course."""

    image: str | None = Field(None, description="Grading image; default: the learner image (a course spec may name another).")
    workers: int | None = Field(None, ge=1, le=256, description="Submissions graded at once; default: the number of cores.")


class ExchangeSettings(Section):
    """Limits of the nbgrader exchange service: what one learner may send to, and keep on, the
    disk that also holds the hub's database."""

    max_upload: str = Field(
        "100M", description="Largest upload of one submission (the compressed tar.gz); larger "
        "is refused from its Content-Length, before any of it is read.",
    )
    max_unpacked: str = Field(
        "100M", description="Largest unpacked size of one submission (its files together); "
        "counted as the archive is read, so a gzip bomb stops at this size.",
    )
    max_entries: int = Field(
        1000, ge=1, le=1_000_000, description="Most files and folders in one submission.",
    )
    quota_per_learner: str = Field(
        "500M", description="Storage one learner may hold in one course: all their kept "
        "submissions (every resubmission is kept), unpacked.",
    )
    max_submissions: int = Field(
        20, ge=1, le=10_000, description="Submissions (the first and every resubmission) one "
        "learner may make to one assignment.",
    )
    workers: int = Field(
        4, ge=1, le=64, description="Uploads unpacked at once, in threads; the rest wait their "
        "turn while the service goes on answering.",
    )

    @field_validator("max_upload", "max_unpacked", "quota_per_learner", mode="before")
    @classmethod
    def _sizes(cls, v: str) -> str:
        if size_bytes(_size(v)) < 1024:
            raise ValueError("must be at least 1K")
        return _size(v)


GPU_UUID = re.compile(r"^(GPU|MIG)-[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
"""A device's UUID as nvidia-smi prints it (MIG-GPU-<uuid>/<gi>/<ci> on old drivers): it goes
into NVIDIA_VISIBLE_DEVICES and Docker's device requests, so no commas or spaces."""
GpuPolicyName = Literal["none", "exclusive", "shared", "mig"]
"""How learners get GPUs: none, exclusive, shared or mig (docs/gpu.md)."""


class GpuDeviceSettings(Section):
    """One GPU or MIG instance declared by hand (hub/gpu/inventory.py)."""

    uuid: str = Field(description="GPU-... or MIG-..., as `nvidia-smi -L` prints it.")
    index: int | None = Field(
        None, ge=0, le=1023, description="nvidia-smi's index (a MIG instance: its GPU's); "
        "default: the position in the list.",
    )
    model: str = Field("", max_length=200, description="e.g. NVIDIA A100-SXM4-40GB.")
    memory_mib: int = Field(0, ge=0, le=16_777_216, description="Memory in MiB (0: unknown).")
    mig: bool | None = Field(
        None, validate_default=True,
        description="A MIG instance; default: whether the UUID starts with MIG-.",
    )
    parent_uuid: str | None = Field(None, description="A MIG instance's GPU.")

    @field_validator("uuid", "parent_uuid")
    @classmethod
    def _uuid(cls, v: str | None) -> str | None:
        if v is not None and not GPU_UUID.match(v):
            raise ValueError("must look like GPU-<uuid> or MIG-<uuid> (letters, digits, "
                             "'-', '.', '/', no spaces or commas)")
        return v

    @field_validator("mig")
    @classmethod
    def _mig(cls, v: bool | None, info: ValidationInfo) -> bool:
        return str(info.data.get("uuid", "")).startswith("MIG-") if v is None else v


class GpuSettings(Section):
    """GPUs for learners (hub/gpu/, docs/gpu.md): which devices there are, and how a course's
    learners share them. A course's course.yml may override policy, per_device and weekly
    hours (its `gpu:` block)."""

    inventory: list[GpuDeviceSettings] = Field(
        default_factory=list, description="The GPUs and MIG instances, declared by hand: a "
        "list of {uuid, model, memory_mib, index, mig, parent_uuid}. Takes precedence over "
        "what nvidia-smi reports; empty: nvidia-smi's, or none (GPU features are then absent).",
    )
    default_policy: GpuPolicyName = Field(
        "none", description="How a course without its own `gpu.policy` hands out GPUs: none "
        "(CPU only), exclusive (a whole GPU per learner), shared (up to shared_per_device "
        "learners per GPU, each with a memory cap) or mig (one MIG instance per learner).",
    )
    shared_per_device: int = Field(
        4, ge=1, le=64, description="Learners per GPU under the shared policy.",
    )
    shared_memory_fraction: float | None = Field(
        None, gt=0, le=1, description="Fraction of a GPU's memory each shared learner may "
        "use (ONELAB_GPU_MEMORY_FRACTION); default, and at most: 1 / the course's learners "
        "per GPU.",
    )
    queue_wait_limit: int = Field(
        300, ge=0, le=86_400, description="Seconds a spawn waits in the queue for a free GPU "
        "before it starts on CPU only, with a message.",
    )
    weekly_gpu_hours: float = Field(
        0, ge=0, le=168, description="GPU-hours each learner may hold per week, per course "
        "(Monday 00:00, the host's time zone); 0: unlimited.",
    )

    image: str = Field(
        "", description="The image of a learner server that holds a GPU claim; empty: "
        "spawner.image if set, else the CUDA learner image (`onelab images build --gpu`). "
        "Servers on CPU keep the learner image.",
    )

    @field_validator("inventory")
    @classmethod
    def _inventory(cls, v: list[GpuDeviceSettings]) -> list[GpuDeviceSettings]:
        uuids = [d.uuid for d in v]
        twice = sorted({u for u in uuids if uuids.count(u) > 1})
        if twice:
            raise ValueError(f"declares {', '.join(twice)} more than once")
        for d in v:
            if d.parent_uuid is not None and not d.mig:
                raise ValueError(f"{d.uuid}: only a MIG instance (mig: true) has a parent_uuid")
            if d.parent_uuid is not None and d.parent_uuid not in uuids:
                raise ValueError(f"{d.uuid}: parent_uuid {d.parent_uuid} is not declared")
        return v

    def memory_fraction(self, per_device: int) -> float:
        """A shared learner's memory cap when `per_device` learners share a GPU: never more
        than 1 / per_device, so the caps on one GPU never add up to more than the GPU."""
        even = int(10_000 / per_device) / 10_000  # rounded down: 3 x 0.3333 stays under 1
        if self.shared_memory_fraction is not None:
            return min(self.shared_memory_fraction, even)
        return even


def size_bytes(value: str) -> int:
    """A validated size such as 512M or 2G in bytes (K, M, G, T are powers of 1024)."""
    value = _size(value)
    scale = 1024 ** ("KMGT".index(value[-1]) + 1) if value[-1] in "KMGT" else 1
    return int(float(value.rstrip("KMGT")) * scale)


def gpus_value(value: object, devices: bool) -> str:
    """none | all | N, and with `devices` also device=I[,J...] (Docker's --gpus): checked here,
    not by Docker."""
    v = str(value).strip().lower()
    if v in ("none", "all") or v.isdigit():
        return v
    if devices and re.fullmatch(r"device=\d+(,\d+)*", v):
        return v
    raise ValueError("must be none, all, a number, or device=0[,1...]" if devices
                     else "must be none, all or a number")


class KubernetesSettings(Section):
    """What `onelab k8s values` needs beyond the rest of the settings (docs/kubernetes.md)."""

    registry: str = Field(
        "", description="Registry prefix the cluster pulls OneLab's images from (e.g. "
        "registry.example.org/onelab); empty: the local names, as on one server.")
    hub_image: str = Field(
        "", description="The OneLab hub image (the chart's hub image with OneLab installed); "
        "empty: onelab/hub:<version>.")
    home_size: str = Field("10G", description="Each learner's home volume (a PVC).")
    storage_class: str = Field("", description="StorageClass of learners' homes; empty: the "
                               "cluster's default.")
    datasets_claim: str = Field(
        "onelab-datasets", description="A ReadOnlyMany PVC with the shared datasets, mounted "
        "read-only at ~/datasets.")
    cpu_guarantee: float = Field(0.25, gt=0, le=256, description="CPUs each learner's pod "
                                 "requests (the limit is spawner.cpu_limit).")
    memory_guarantee: str = Field("1G", description="Memory each learner's pod requests (the "
                                  "limit is spawner.mem_limit).")
    mig_resource: str = Field(
        "nvidia.com/mig-1g.10gb", description="The device plugin's resource a `mig` course "
        "asks for.")
    placeholders: int = Field(0, ge=0, le=10_000, description="User placeholder pods that keep "
                              "room for that many learners (warm capacity).")
    proxy_service_type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = Field(
        "LoadBalancer", description="How the public proxy is exposed.")

    @field_validator("home_size", "memory_guarantee")
    @classmethod
    def _sizes(cls, v: str) -> str:
        return _size(v)


class Settings(Section):
    state_dir: Path = Field(
        Path("/var/lib/onelab"), description="Hub database, secrets, logs and pid files."
    )
    courses_dir: Path | None = Field(
        None, description="Where the course specs are (courses/<id>/course.yml); default: "
        "the repository's courses/.",
    )
    hub: HubSettings = Field(default_factory=HubSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    spawner: SpawnerSettings = Field(default_factory=SpawnerSettings)
    culler: CullerSettings = Field(default_factory=CullerSettings)
    classes: ClassSettings = Field(default_factory=ClassSettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    grading: GradingSettings = Field(default_factory=GradingSettings)
    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    k8s: KubernetesSettings = Field(default_factory=KubernetesSettings)

    @property
    def db_url(self) -> str:
        return self.hub.db_url or f"sqlite:///{self.state_dir / 'jupyterhub.sqlite'}"

    @property
    def public_url(self) -> str:
        """The URL learners open: https:// whenever hub.tls (onelab.tls.verify_for says how
        OneLab's own requests trust it)."""
        scheme = "https" if self.hub.tls else "http"
        return f"{scheme}://{_url_host(self.hub.public_host)}:{self.hub.port}{self.hub.base_url}"

    @property
    def uses_gpu(self) -> bool:
        """Every learner gets the same GPUs (spawner.gpus), so every learner gets the CUDA
        image. GPUs handed out by claims (gpu.inventory, docs/gpu.md) choose the image per
        start instead (images.table.gpu_learner_image)."""
        return self.spawner.gpus != "none"


def config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The settings file in force, or None when running on defaults alone."""
    env = os.environ if environ is None else environ
    if env.get(ENV_CONFIG):
        path = Path(env[ENV_CONFIG])
        if not path.is_file():
            raise SettingsError(N_("{var}={path}: no such file"), var=ENV_CONFIG, path=path)
        return path
    for candidate in (Path("onelab.yaml"), Path("/etc/onelab/onelab.yaml")):
        if candidate.is_file():
            return candidate
    return None


def _from_env(environ: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    tree: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SettingsError(f"{name}: conflicts with another ONELAB_ variable")
        node[path[-1]] = value
        origin[".".join(path)] = f"environment {name}"
    return tree, origin


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _allowed(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # an item of a list of blocks (gpu.inventory)
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if get_origin(ann) is list:
            ann = get_args(ann)[0]
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return ""
        model = ann
    return ", ".join(model.model_fields)


def _describe(err: ValidationError, origin: dict[str, str],
              source: str) -> list[SettingsError]:
    parts = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not isinstance(p, int))
        key = ".".join(str(p) for p in loc)
        below = [k for k in origin if k.startswith(key + ".")]
        where = next((origin[k] for k in (key, *_prefixes(key), *below) if k in origin), source)
        if e["type"] == "extra_forbidden":
            allowed = _allowed(e["loc"])
            parts.append(SettingsError(
                N_("unknown setting {key!r} (from {where}); allowed here: {allowed}"),
                key=key, where=where, allowed=allowed))
        else:
            msg = e["msg"].removeprefix("Value error, ")
            parts.append(SettingsError(N_("bad setting {key} = {value!r} (from {where}): {why}"),
                                       key=key, value=e.get("input"), where=where, why=msg))
    return parts


def _prefixes(key: str) -> list[str]:
    bits = key.split(".")
    return [".".join(bits[:i]) for i in range(len(bits) - 1, 0, -1)]


def load(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load and validate the settings; raise SettingsError with one line on anything wrong."""
    environ = dict(os.environ if environ is None else environ)
    path = path if path is not None else config_file(environ)
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            why = getattr(e, "problem", e)
            if mark:
                raise SettingsError(N_("{path} line {line}: not valid YAML ({why})"), path=path,
                                    line=mark.line + 1, why=why) from None
            raise SettingsError(N_("{path}: not valid YAML ({why})"), path=path, why=why) from None
        except OSError as e:
            raise SettingsError(N_("{path}: cannot read ({why})"), path=path,
                                why=e.strerror) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path}: must be a mapping of settings, not {type(loaded).__name__}")
        data = loaded
    env_tree, origin = _from_env(environ)
    data = _merge(data, env_tree)
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise SettingsError("{problems}", problems=_describe(e, origin, source)) from None


SECRET_SETTINGS = ("auth.oauth.client_secret",)
"""Settings that are secrets: shown as set or not, never their value."""
HIDDEN = "[set, not shown]"


def hide_password(url: str) -> str:
    """A database URL with its password (postgresql://user:PASSWORD@host/db) hidden."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://[^:/@]*):[^/]*@", r"\1:***@", url)


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data for people to read (`onelab settings`), secrets hidden: the
    database URL's password too."""
    data = settings.model_dump(mode="json")
    if data["hub"].get("db_url"):
        data["hub"]["db_url"] = hide_password(data["hub"]["db_url"])
    for dotted in SECRET_SETTINGS:
        *parents, key = dotted.split(".")
        section = data
        for name in parents:
            section = section[name]
        if section.get(key):
            section[key] = HIDDEN
    return data


def reference() -> str:
    """The settings reference as Markdown, generated from the model (docs/settings.md)."""
    lines = ["# OneLab settings reference", "",
             "Generated by `onelab settings --reference`. Set in `onelab.yaml` or as",
             "`ONELAB_<SECTION>__<KEY>` environment variables.", ""]

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows: list[str] = []
        items: list[tuple[type[BaseModel], str]] = []
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            default = ("(required)" if field.is_required() else
                       f"`{field.get_default(call_default_factory=True)!r}`")
            rows.append(f"| `{prefix}{name}` | {default} | {field.description or ''} |")
            item = get_args(ann)[0] if get_origin(ann) is list else None
            if isinstance(item, type) and issubclass(item, BaseModel):
                items.append((item, f"{prefix}{name}[]."))  # a list of blocks: their keys too
        if rows:
            lines.extend([f"## `{prefix.rstrip('.') or 'top level'}`", "",
                          "| key | default | meaning |", "|---|---|---|", *rows, ""])
        for item, item_prefix in items:
            walk(item, item_prefix)

    walk(Settings, "")
    return "\n".join(lines)

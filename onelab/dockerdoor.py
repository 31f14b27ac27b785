"""The one door to the Docker Engine: no other module of OneLab imports Docker or runs it.

A container is described by an `onelab.policy.Policy`; here it becomes the Docker call:
`run_args` (the CLI's `docker run`, for containers fed on stdin), `run_kwargs` (the SDK's
`containers.run`) and `spawner_settings` (DockerSpawner's traits, for learner servers, which
DockerSpawner starts with its own client in the hub). The lockdown every container gets is
written once, in `_LOCKDOWN` and these three functions. Everything OneLab creates carries the
label ``onelab.role`` (learner, grader, regress, ...), so cleanup can find it; errors from a
missing daemon or image become one-line OneLabErrors.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound, NotFound

import docker
from onelab.errors import DockerUnavailable, ImageMissing
from onelab.i18n import N_
from onelab.policy import ROLE_LABEL, Mount, Policy

__all__ = ["ROLE_LABEL", "Mount", "NotFound", "Policy"]
_LOCKDOWN = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}


# -- a Policy, as Docker wants it -------------------------------------------------------------

def device_requests(gpus: str) -> list[dict[str, Any]]:
    """Docker's device requests for none | all | N | device=I[,J]."""
    if gpus == "none":
        return []
    if gpus.startswith("device="):
        return [{"driver": "nvidia", "device_ids": gpus.split("=", 1)[1].split(","),
                 "capabilities": [["gpu"]]}]
    return [{"count": -1 if gpus == "all" else int(gpus), "capabilities": [["gpu"]]}]


def _gpus_arg(gpus: str) -> str:
    """The CLI's --gpus value: `device=0,1` must reach it quoted, or the comma splits it."""
    return f'"{gpus}"' if gpus.startswith("device=") else gpus


def run_args(p: Policy) -> list[str]:
    """`docker run ...` arguments (after `docker`) for a container started by the CLI."""
    args = ["run", *(["-i"] if p.stdin else []), *(["--rm"] if p.remove_on_exit else []),
            *(["--name", p.name] if p.name else []),
            *([] if p.logs else ["--log-driver", "none"])]
    for k, v in p.all_labels().items():
        args += ["--label", f"{k}={v}"]
    args += ["--network", p.network, *(["--read-only"] if p.read_only_root else [])]
    for path, opts in p.tmpfs:
        args += ["--tmpfs", f"{path}:{opts}"]
    args += ["--pids-limit", str(p.pids), "--memory", p.memory, "--memory-swap", p.memory,
             "--cpus", str(p.cpus), *(["--cpuset-cpus", p.cpuset] if p.cpuset else []),
             *(["--gpus", _gpus_arg(p.gpus)] if p.gpus != "none" else [])]
    for k, v in (*p.thread_env(), *p.environment):
        args += ["--env", f"{k}={v}"]
    args += ["--user", p.user, "--cap-drop", "ALL",
             *(a for c in p.capabilities for a in ("--cap-add", c)),
             "--security-opt", "no-new-privileges"]
    for m in _checked(p.mounts):
        args += ["--volume", f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}"]
    if p.workdir:
        args += ["--workdir", p.workdir]
    if p.entrypoint is not None:
        args += ["--entrypoint", p.entrypoint[0]]
    return [*args, p.image, *p.entrypoint[1:], *p.command] if p.entrypoint else [
        *args, p.image, *p.command]


def run_kwargs(p: Policy) -> dict[str, Any]:
    """Keyword arguments of the SDK's `containers.run` for a detached container."""
    kw: dict[str, Any] = {
        "image": p.image, "command": list(p.command) or None, "detach": True,
        "user": p.user, "environment": dict((*p.thread_env(), *p.environment)),
        "network_mode" if p.network == "none" else "network": p.network,
        "volumes": {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                    for m in _checked(p.mounts)},
        **_LOCKDOWN, "cap_add": list(p.capabilities) or None, "read_only": p.read_only_root,
        "tmpfs": dict(p.tmpfs), "mem_limit": p.memory, "memswap_limit": p.memory,
        "nano_cpus": int(p.cpus * 1e9), "pids_limit": p.pids, "labels": p.all_labels(),
        "auto_remove": False,
    }
    if p.name:
        kw["name"] = p.name
    if p.entrypoint is not None:
        kw["entrypoint"] = list(p.entrypoint)
    if p.workdir:
        kw["working_dir"] = p.workdir
    if p.cpuset:
        kw["cpuset_cpus"] = p.cpuset
    if p.gpus != "none":
        kw["device_requests"] = [docker.types.DeviceRequest(**d)
                                 for d in device_requests(p.gpus)]
    return kw


def spawner_settings(p: Policy) -> dict[str, Any]:
    """DockerSpawner's traits for learner servers of this policy (it starts them itself)."""
    host_config: dict[str, Any] = {
        "pids_limit": p.pids, **_LOCKDOWN, "read_only": p.read_only_root,
        "tmpfs": dict(p.tmpfs), "memswap_limit": p.memory,  # no swap beyond the memory limit
    }
    if p.capabilities:
        host_config["cap_add"] = list(p.capabilities)
    if p.gpus != "none":
        host_config["device_requests"] = device_requests(p.gpus)
    return {
        "image": p.image, "network_name": p.network, "mem_limit": p.memory,
        "cpu_limit": p.cpus, "environment": dict(p.environment),
        # DockerSpawner's short form for read-write, its long form for read-only
        "volumes": {m.source: {"bind": m.target, "mode": "ro"} if m.read_only else m.target
                    for m in _checked(p.mounts)},
        "extra_host_config": host_config,
        "extra_create_kwargs": {"user": p.user, "labels": p.all_labels()},
    }


def _checked(mounts: tuple[Mount, ...]) -> tuple[Mount, ...]:
    """Mounts as given, but never the Docker socket: a container with it owns the host."""
    for m in mounts:
        if "docker.sock" in m.source or "docker.sock" in m.target or m.source in ("/", "/run",
                                                                                 "/var/run"):
            raise DockerUnavailable(f"refused: a OneLab container never gets {m.source}")
    return mounts


@functools.lru_cache(maxsize=1)
def client() -> docker.DockerClient:
    """A client for the engine in DOCKER_HOST (default: the local socket), checked to answer."""
    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except DockerException as e:
        reason = str(e).split("(")[0].strip() or type(e).__name__
        raise DockerUnavailable(
            N_("no Docker daemon answers ({reason}); start it with `docker/ensure-dockerd.sh` "
               "(or `make up`, which does it for you)"), reason=reason) from None
    return c


def require_image(tag: str, what: str = "image") -> dict[str, Any]:
    """The image's attributes, or ImageMissing saying how to build it."""
    try:
        return client().images.get(tag).attrs
    except ImageNotFound:
        raise ImageMissing(
            N_("{what} {tag} is not built; run `onelab images build` (or set spawner.image)"),
            what=what, tag=tag) from None


def build_image(context: str, tag: str, buildargs: dict[str, str], labels: dict[str, str],
                on_line: Any = None) -> None:
    """`docker build` of a context folder (never pulling); each output line to `on_line`.
    A failed build raises DockerUnavailable with Docker's own last error."""
    last_error = None
    try:
        for chunk in client().api.build(path=context, tag=tag, buildargs=buildargs, rm=True,
                                        forcerm=True, pull=False, decode=True, labels=labels):
            if "error" in chunk:
                last_error = chunk["error"].strip()
            line = (chunk.get("stream") or "").rstrip()
            if line and on_line is not None:
                on_line(line)
    except APIError as e:
        raise DockerUnavailable(f"docker build of {tag} failed: {e.explanation or e}") from None
    if last_error:
        raise DockerUnavailable(f"docker build of {tag} failed: {last_error}")


def import_image(tarball: str, tag: str) -> None:
    """`docker import` of a root file system tarball as `tag`."""
    repo, _, tg = tag.partition(":")
    client().api.import_image_from_file(tarball, repository=repo, tag=tg)


def pull_image(ref: str) -> None:
    """Pull from a registry (only where the operator asked for a registry base)."""
    repo, _, tg = ref.partition(":")
    try:
        client().images.pull(repo, tag=tg or "latest")
    except APIError as e:
        raise DockerUnavailable(f"cannot pull {ref} ({e.explanation})") from None


def image_labels(tag: str) -> dict[str, str]:
    """An image's labels, {} when it is not there."""
    try:
        return client().images.get(tag).labels or {}
    except ImageNotFound:
        return {}


def image_exists(tag: str) -> bool:
    try:
        client().images.get(tag)
        return True
    except ImageNotFound:
        return False


def ensure_network(name: str, *, internal: bool) -> str:
    """Create the learner network if missing and return its gateway address.

    Inter-container traffic is off (``enable_icc=false``): a learner's container cannot open a
    connection to another learner's, only to the host (the hub's API listens on the gateway).
    """
    c = client()
    try:
        net = c.networks.get(name)
    except NotFound:
        net = c.networks.create(
            name,
            driver="bridge",
            internal=internal,
            labels={ROLE_LABEL: "network"},
            options={"com.docker.network.bridge.enable_icc": "false"},
        )
        net.reload()
    else:
        opts = net.attrs.get("Options") or {}
        if bool(net.attrs.get("Internal")) != internal or opts.get(
            "com.docker.network.bridge.enable_icc"
        ) != "false":
            raise DockerUnavailable(
                f"Docker network {name} exists with other options (internal or icc); remove it "
                f"with `docker network rm {name}` once no learner container uses it"
            )
    configs = (net.attrs.get("IPAM") or {}).get("Config") or []
    for cfg in configs:
        if cfg.get("Gateway"):
            return cfg["Gateway"]
        if cfg.get("Subnet"):
            return str(next(ipaddress.ip_network(cfg["Subnet"]).hosts()))
    raise DockerUnavailable(f"Docker network {name} has no IPv4 gateway")


def network_bridge(name: str) -> tuple[str, str]:
    """(host interface, gateway address) of a bridge network, for firewall rules."""
    try:
        net = client().networks.get(name)
    except NotFound:
        raise DockerUnavailable(f"Docker network {name} does not exist") from None
    bridge = (net.attrs.get("Options") or {}).get("com.docker.network.bridge.name") or \
        f"br-{net.short_id}"
    for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
        if cfg.get("Gateway"):
            return bridge, cfg["Gateway"]
    raise DockerUnavailable(f"Docker network {name} has no IPv4 gateway")


def ensure_volume(name: str, role: str) -> None:
    c = client()
    try:
        c.volumes.get(name)
    except NotFound:
        c.volumes.create(name, labels={ROLE_LABEL: role})


def containers(role: str, **labels: str) -> list[Any]:
    filters = [f"{ROLE_LABEL}={role}", *(f"{k}={v}" for k, v in labels.items())]
    # a container removed between the listing and its inspection is simply not there
    return client().containers.list(all=True, filters={"label": filters}, ignore_removed=True)


def remove_containers(role: str, **labels: str) -> int:
    """Force-remove every container with this role (and labels); returns how many."""
    gone = 0
    for ctr in containers(role, **labels):
        try:
            ctr.remove(force=True)
            gone += 1
        except NotFound:
            pass
    return gone


@dataclass
class PipedRun:
    exit_code: int | None
    stdout: bytes
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    oom_killed: bool = False


class PipedContainer:
    """`docker <args>` (a `run -i --rm --name NAME ...`) started now, fed later.

    Starting is split from feeding so a container can boot (and its program get ready) while
    the previous one still works; it reads nothing until `finish` pipes its input in. One left
    unfed is `abandon`ed: its stdin closes, its program sees no input and ends, --rm removes it.
    """

    def __init__(self, args: list[str], name: str, *, max_output: int) -> None:
        self.name = name
        self.proc = subprocess.Popen(["docker", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = bytearray(), bytearray()
        self.truncated = False
        self.max_output = max_output
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self._drain, self._drain_err)]
        for t in self.threads:
            t.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read(65536):
            if len(self.out) + len(chunk) > self.max_output:
                self.truncated = True
                continue  # keep reading so the container is never blocked on a full pipe
            self.out.extend(chunk)

    def _drain_err(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read(65536):
            if len(self.err) < 65536:
                self.err.extend(chunk[: 65536 - len(self.err)])

    def abandon(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass

    def finish(self, stdin: bytes, *, timeout: float) -> PipedRun:
        """Pipe `stdin` in, wait at most `timeout` seconds (then kill), read stdout back.
        Whatever happens, the container is gone when this returns."""
        proc = self.proc

        def feed() -> None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(stdin)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        # waitpid blocks without polling; a timer kills the container past its time
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            subprocess.run(["docker", "kill", self.name], capture_output=True, check=False)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        clean = False
        try:
            proc.wait()
            clean = not expired.is_set() and proc.returncode is not None and proc.returncode < 125
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if not clean:  # --rm removes a container that ended; anything else is removed here
                subprocess.run(["docker", "rm", "-f", self.name], capture_output=True,
                               check=False)
        for t in (*self.threads, feeder):
            t.join(timeout=10)
        timed_out = expired.is_set()
        return PipedRun(proc.returncode, bytes(self.out), self.err.decode("utf-8", "replace"),
                        timed_out, self.truncated,
                        oom_killed=proc.returncode == 137 and not timed_out)


def run_piped(args: list[str], name: str, stdin: bytes, *, timeout: float,
              max_output: int) -> PipedRun:
    """`docker <args>` (a `run -i --rm --name NAME ...`) with `stdin` piped in and stdout read
    back, at most `max_output` bytes of it. Past `timeout` the container is killed. Whatever
    happens, the container named `name` is gone when this returns."""
    return PipedContainer(args, name, max_output=max_output).finish(stdin, timeout=timeout)


# -- volumes: kept, copied, removed --------------------------------------------------------

def volume_exists(name: str) -> bool:
    try:
        client().volumes.get(name)
        return True
    except NotFound:
        return False


def volumes(**labels: str) -> list[Any]:
    """Volumes that carry all these labels."""
    return client().volumes.list(filters={"label": [f"{k}={v}" for k, v in labels.items()]})


def remove_volume(name: str) -> bool:
    """Remove a volume; False when there was none. One in use is an error that says so."""
    try:
        client().volumes.get(name).remove()
        return True
    except NotFound:
        return False
    except DockerException as e:
        raise DockerUnavailable(f"cannot remove volume {name}: {e}; is a container still "
                                "using it?") from None


# Runs as root inside the copy container: `cp -a` keeps owners, modes, times and links; then
# both trees are walked and compared (entries, bytes, and a digest of every entry's path, type,
# size, mode and owner), so a copy that lost a file or an owner is caught before the source goes.
_COPY_SCRIPT = r"""
import hashlib, json, os, stat, subprocess, sys
cp = subprocess.run(["cp", "-a", "/from/.", "/to/"], capture_output=True, text=True)
if cp.returncode:
    sys.exit("cp failed: " + cp.stderr.strip()[-500:])
def tree(top):
    entries = size = 0
    st = os.lstat(top)
    rows = [f".\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}"]
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            entries += 1
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                size += st.st_size
            rows.append(f"{os.path.relpath(p, top)}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}"
                        f"\0{st.st_size if not stat.S_ISDIR(st.st_mode) else 0}")
    rows.sort()
    return [entries, size, hashlib.sha256("\n".join(rows).encode()).hexdigest()]
print(json.dumps({"from": tree("/from"), "to": tree("/to")}))
"""


def copy_volume(src: str, dst: str, image: str, *, labels: dict[str, str],
                timeout: float = 3600) -> tuple[int, int]:
    """Copy volume `src` into a new volume `dst` and verify the copy; returns (entries, bytes).

    Docker cannot rename a volume, so keeping one under another name is a copy. A faithful
    copy of owners needs root, so the helper container is root with only CHOWN, FOWNER and
    DAC_OVERRIDE, no network, no new privileges, a read-only root and `src` mounted
    read-only. On any failure `dst` is removed again and `src` is untouched.
    """
    import json
    import uuid

    from requests.exceptions import ConnectionError as ReadFailed
    from requests.exceptions import ReadTimeout

    c = client()
    if volume_exists(dst):
        raise DockerUnavailable(f"volume {dst} exists already; not copying {src} over it")
    c.volumes.create(dst, labels=labels)
    ctr, copied = None, False
    try:
        ctr = c.containers.run(**run_kwargs(Policy(
            role="volume-copy", image=image, name=f"onelab-volume-copy-{uuid.uuid4().hex[:8]}",
            entrypoint=(), command=("python3", "-c", _COPY_SCRIPT), user="0:0",
            capabilities=("CHOWN", "FOWNER", "DAC_OVERRIDE"), memory="512m", pids=64,
            mounts=(Mount(src, "/from"), Mount(dst, "/to", read_only=False)))))
        try:
            code = ctr.wait(timeout=timeout)["StatusCode"]
        except (ReadTimeout, ReadFailed):
            raise DockerUnavailable(f"copying volume {src} took over {timeout:.0f} s; "
                                    "nothing was removed") from None
        out = ctr.logs(stdout=True, stderr=False).decode(errors="replace").strip()
        err = ctr.logs(stdout=False, stderr=True).decode(errors="replace").strip()
        if code != 0:
            raise DockerUnavailable(f"copying volume {src} to {dst} failed (exit {code}): "
                                    f"{(err or out)[-300:]}; nothing was removed")
        got = json.loads(out.splitlines()[-1])
        if got["from"] != got["to"]:
            raise DockerUnavailable(f"the copy of volume {src} differs from it ({got['from'][:2]}"
                                    f" vs {got['to'][:2]} entries, bytes); nothing was removed")
        copied = True
        return got["from"][0], got["from"][1]
    except DockerException as e:
        raise DockerUnavailable(f"copying volume {src} to {dst} failed: {e}; nothing was "
                                "removed") from None
    finally:
        if ctr is not None:
            try:
                ctr.remove(force=True)
            except NotFound:
                pass
        if not copied:
            remove_volume(dst)


# -- long-running, locked-down service containers (a course's grading service) ---------------

def start_service(policy: Policy) -> Any:
    """Start a long-running confined container (replacing one of the same name a crash left);
    returns it."""
    c = client()
    try:
        c.containers.get(policy.name).remove(force=True)
    except NotFound:
        pass
    return c.containers.run(**run_kwargs(policy))


def container_ip(ctr: Any, network: str) -> str:
    ctr.reload()
    ip = ((ctr.attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(
        network, {}).get("IPAddress")
    if not ip:
        raise DockerUnavailable(f"container {ctr.name} has no address on {network}")
    return ip


def find_container(name: str) -> Any | None:
    try:
        return client().containers.get(name)
    except NotFound:
        return None


def exec_in(name: str, cmd: list[str], *, user: str = "1000:1000", workdir: str = "/",
            environment: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command in a running container as `user`; (exit code, output)."""
    ctr = find_container(name)
    if ctr is None or ctr.status != "running":
        raise DockerUnavailable(f"container {name} is not running")
    code, out = ctr.exec_run(cmd, user=user, workdir=workdir, environment=environment or {},
                             demux=False)
    return code, (out or b"").decode("utf-8", "replace")


def put_files(name: str, path: str, data: bytes) -> None:
    """Unpack a tar into a container's `path` (owners as the tar says)."""
    ctr = find_container(name)
    if ctr is None:
        raise DockerUnavailable(f"container {name} does not exist")
    if not ctr.put_archive(path, data):
        raise DockerUnavailable(f"could not copy files into {name}:{path}")


# -- a folder or volume as a tar stream, out and in (backup and restore) ----------------------

# Runs in the helper container: the tree at argv[1] as a tar on stdout (links as links, never
# followed), each SQLite file named in argv[2:] replaced by an online-backup snapshot (consistent
# while a writer works on it) with the original's owner and mode; counts on stderr as JSON.
_TREE_OUT = r"""
import json, os, sqlite3, sys, tarfile
top, dbs = sys.argv[1], set(sys.argv[2:])
skip = {n + s for n in dbs for s in ("-journal", "-wal", "-shm")}
entries = size = 0
def keep(ti):
    global entries, size
    rel = os.path.normpath(ti.name)
    if rel in skip or rel in dbs:
        return None
    entries += rel != "."
    size += ti.size if ti.isreg() else 0
    return ti
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as t:
    t.add(top, arcname=".", filter=keep)
    for rel in sorted(dbs):
        path = os.path.join(top, rel)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        snap = "/scratch/snapshot.db"
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        dst = sqlite3.connect(snap)
        src.backup(dst)
        dst.close(), src.close()
        ti = t.gettarinfo(path, arcname="./" + rel)
        ti.size = os.path.getsize(snap)
        with open(snap, "rb") as fh:
            t.addfile(ti, fh)
        os.unlink(snap)
        entries += 1
        size += ti.size
print(json.dumps({"entries": entries, "bytes": size}), file=sys.stderr)
"""

# Runs in the helper container: a tar from stdin into the (empty) tree at argv[1]. Only plain
# files, folders, links and fifos, each inside the tree (no absolute path, no .., no write
# through a link); owners (as root), modes and times kept, folders' last so a read-only one
# still gets its files. Counts on stdout as JSON, to compare with the export's.
_TREE_IN = r"""
import json, os, sys, tarfile
top = os.path.realpath(sys.argv[1])
def inside(rel):
    return rel == "." or not (os.path.isabs(rel) or rel == ".." or rel.startswith("../"))
entries = size = refused = 0
dirs = []
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as t:
    for m in t:
        rel = os.path.normpath(m.name)
        dest = os.path.join(top, rel)
        parent = os.path.realpath(os.path.dirname(dest))
        ok = inside(rel) and (parent == top or parent.startswith(top + "/"))
        if m.islnk():
            ok = ok and inside(os.path.normpath(m.linkname))
        if not ok or not (m.isdir() or m.isreg() or m.issym() or m.islnk() or m.isfifo()):
            refused += 1
            continue
        if m.isdir():
            os.makedirs(dest, exist_ok=True)
            dirs.append((m, dest))
        else:
            t.extract(m, top, set_attrs=True, numeric_owner=True)
            size += m.size if m.isreg() else 0
        entries += 1 if rel != "." else 0
    for m, dest in reversed(dirs):
        t.chown(m, dest, True)
        t.utime(m, dest)
        t.chmod(m, dest)
print(json.dumps({"entries": entries, "bytes": size, "refused": refused}))
"""


def run_streamed(policy: Policy, *, stdin: Any = None, stdout: Any = None,
                 timeout: float = 3600) -> tuple[str, str]:
    """`docker run` a short-lived container of this policy with a file piped to its stdin and
    its stdout written to a file (nothing held in memory); returns (stdout if not sent to a
    file, stderr). A failure or a run past `timeout` raises DockerUnavailable with its last
    words; the container is gone either way."""
    import dataclasses
    import uuid

    name = policy.name or f"onelab-{policy.role}-{uuid.uuid4().hex[:8]}"
    p = dataclasses.replace(policy, name=name, stdin=stdin is not None, remove_on_exit=True)
    try:
        proc = subprocess.run(["docker", *run_args(p)],
                              stdin=subprocess.DEVNULL if stdin is None else stdin,
                              stdout=subprocess.PIPE if stdout is None else stdout,
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        raise DockerUnavailable(f"container {name} ({policy.role}) ran past {timeout:.0f} s "
                                "and was stopped") from None
    err = (proc.stderr or b"").decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        raise DockerUnavailable(f"container {name} ({policy.role}) failed (exit "
                                f"{proc.returncode}): {err[-400:]}")
    return (proc.stdout or b"").decode("utf-8", "replace"), err


def containers_using(volume: str) -> list[Any]:
    """Running containers that mount this volume."""
    return [c for c in client().containers.list(filters={"volume": volume})
            if c.status == "running"]


def export_tree(source: str, out: Any, image: str, *, user: str = "0:0",
                sqlite: tuple[str, ...] = (), pause: bool = False,
                timeout: float = 3600) -> dict[str, int]:
    """A volume (or host folder) as a tar written to the file `out`; returns its counts.

    The helper container mounts `source` read-only, has no network and a read-only root; as
    root it gets only DAC_READ_SEARCH (read every file, change none). With `pause`, running
    containers that use the volume are frozen (not stopped: kernels live on) while it is
    read, so the copy is one moment of it."""
    import contextlib
    import json

    policy = Policy(
        role="backup", image=image, entrypoint=("python3",), user=user,
        command=("-c", _TREE_OUT, "/from", *sqlite),
        capabilities=("DAC_READ_SEARCH",) if user.startswith("0:") else (),
        memory="512m", pids=64, tmpfs=(("/scratch", "size=256m,mode=1777"),),
        mounts=(Mount(source, "/from"),))
    frozen: list[Any] = []
    with contextlib.ExitStack() as undo:
        if pause:
            for ctr in containers_using(source):
                ctr.pause()
                frozen.append(ctr)
                undo.callback(_unpause, ctr)
        _, err = run_streamed(policy, stdout=out, timeout=timeout)
    return json.loads(err.splitlines()[-1])


def _unpause(ctr: Any) -> None:
    try:
        ctr.unpause()
    except (NotFound, APIError):
        pass


def import_tree(target: str, inp: Any, image: str, *, user: str = "0:0",
                labels: dict[str, str] | None = None, timeout: float = 3600) -> dict[str, int]:
    """A tar from the file `inp` into `target`: a volume, created here (it must not exist), or
    an existing host folder. As root the helper keeps owners, with CHOWN, FOWNER and
    DAC_OVERRIDE only; no network, read-only root. A new volume is removed again on failure."""
    import json

    new_volume = not target.startswith("/")
    if new_volume:
        if volume_exists(target):
            raise DockerUnavailable(f"volume {target} exists already; not restoring over it")
        client().volumes.create(target, labels=labels or {})
    policy = Policy(
        role="restore", image=image, entrypoint=("python3",), user=user,
        command=("-c", _TREE_IN, "/to"),
        capabilities=("CHOWN", "FOWNER", "DAC_OVERRIDE") if user.startswith("0:") else (),
        memory="512m", pids=64, mounts=(Mount(target, "/to", read_only=False),))
    done = False
    try:
        out, _ = run_streamed(policy, stdin=inp, timeout=timeout)
        done = True
    finally:
        if new_volume and not done:
            remove_volume(target)
    return json.loads(out.strip().splitlines()[-1])


def volume_labels(name: str) -> dict[str, str]:
    try:
        return client().volumes.get(name).attrs.get("Labels") or {}
    except NotFound:
        return {}


def volume_names() -> list[str]:
    return sorted(v.name for v in client().volumes.list())


# -- Docker Swarm (spawner.backend: swarm; docs/swarm.md) --------------------------------------

SWARM_ANCHOR = "{network}-anchor"
"""A tiny container that keeps the swarm learner network's bridge up on this node (Docker
removes a swarm-scoped bridge from a node when nothing uses it, and the hub listens on its
gateway)."""


def swarm_info() -> dict[str, Any]:
    """This Engine's swarm state: LocalNodeState (inactive, active, ...), NodeID,
    ControlAvailable (a manager), NodeAddr."""
    return client().info().get("Swarm") or {}


def require_swarm_manager() -> dict[str, Any]:
    info = swarm_info()
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        raise DockerUnavailable(N_("spawner.backend is swarm but this Docker Engine is not a "
                                   "swarm manager; run `onelab swarm init` first"))
    return info


def swarm_init(advertise_addr: str) -> str:
    """Make this Engine a swarm manager (kept as it is when it is one already); its node id."""
    info = swarm_info()
    if info.get("LocalNodeState") == "active":
        if not info.get("ControlAvailable"):
            raise DockerUnavailable(N_("this Docker Engine is a swarm worker; run `onelab swarm "
                                       "init` on the manager"))
        return str(info["NodeID"])
    try:
        client().swarm.init(advertise_addr=advertise_addr,
                            listen_addr=f"{advertise_addr}:2377")
    except APIError as e:
        raise DockerUnavailable(f"docker swarm init failed: {e.explanation or e}") from None
    return str(swarm_info()["NodeID"])


def swarm_join_command() -> str:
    """What a worker runs to join this manager's swarm."""
    info = require_swarm_manager()
    token = client().swarm.attrs["JoinTokens"]["Worker"]
    addr = (info.get("RemoteManagers") or [{}])[0].get("Addr") or f"{info['NodeAddr']}:2377"
    return f"docker swarm join --token {token} {addr}"


def swarm_nodes() -> list[dict[str, Any]]:
    """Each node: id, hostname, role, state, availability, address, CPUs, memory (bytes),
    generic resources (e.g. GPUs advertised) and the learner servers it runs."""
    c = client()
    running: dict[str, int] = {}
    for task in c.api.tasks(filters={"desired-state": "running", "label": f"{ROLE_LABEL}=learner"}):
        node_id = str(task.get("NodeID", ""))
        running[node_id] = running.get(node_id, 0) + 1
    out = []
    for node in c.nodes.list():
        a = node.attrs
        res = (a.get("Description") or {}).get("Resources") or {}
        out.append({
            "id": node.id, "hostname": (a.get("Description") or {}).get("Hostname", ""),
            "role": a["Spec"].get("Role", ""), "availability": a["Spec"].get("Availability", ""),
            "state": (a.get("Status") or {}).get("State", ""),
            "address": (a.get("Status") or {}).get("Addr", ""),
            "cpus": res.get("NanoCPUs", 0) / 1e9, "memory": res.get("MemoryBytes", 0),
            "generic": [r.get("DiscreteResourceSpec") or r.get("NamedResourceSpec")
                        for r in res.get("GenericResources") or []],
            "learners": running.get(str(node.id), 0),
        })
    return out


def _tmpfs_mount(path: str, options: str) -> docker.types.Mount:
    opts = dict(o.split("=", 1) for o in options.split(",") if "=" in o)
    size = opts.get("size")
    scale = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    size_bytes = (int(float(size[:-1]) * scale[size[-1].lower()]) if size and size[-1].lower()
                  in scale else int(size) if size else None)
    return docker.types.Mount(path, None, type="tmpfs", tmpfs_size=size_bytes,
                              tmpfs_mode=int(opts["mode"], 8) if "mode" in opts else None)


def service_spec(p: Policy, *, args: list[str], env: dict[str, str],
                 constraints: list[str]) -> Any:
    """A Policy as a swarm service's task template (ContainerSpec, Resources, no restarts by
    the swarm: the hub decides what happens to a server that died). The same lockdown as a
    container: read-only root, all capabilities dropped, non-root, memory/CPU/pids limits.
    Swarm (Engine API 1.41) has no no-new-privileges: the learner image has no set-uid
    programs instead (images/learner/Dockerfile)."""
    mounts = [docker.types.Mount(m.target, m.source, type="volume", read_only=m.read_only)
              for m in _checked(p.mounts)]
    mounts += [_tmpfs_mount(path, opts) for path, opts in p.tmpfs]
    spec = docker.types.ContainerSpec(
        image=p.image, args=args, env={**dict((*p.thread_env(), *p.environment)), **env},
        user=p.user, labels=p.all_labels(), mounts=mounts, read_only=p.read_only_root,
        cap_drop=["ALL"], cap_add=list(p.capabilities) or None,
        stop_grace_period=int(10e9))
    resources = docker.types.Resources(cpu_limit=int(p.cpus * 1e9),
                                       mem_limit=_memory_bytes(p.memory))
    resources["Limits"]["Pids"] = p.pids  # Engine API 1.41; docker-py has no argument for it
    return docker.types.TaskTemplate(
        container_spec=spec, resources=resources,
        restart_policy=docker.types.RestartPolicy(condition="none"),
        placement=docker.types.Placement(constraints=constraints or None),
        networks=[p.network])


def _memory_bytes(value: str) -> int:
    v = value.strip().lower().rstrip("b")
    scale = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
    return int(float(v[:-1]) * scale[v[-1]]) if v[-1] in scale else int(v)


def _create_network(body: dict[str, Any]) -> None:
    """POST /networks/create with fields docker-py does not pass (ConfigOnly, ConfigFrom)."""
    api: Any = client().api  # its _url and _result: how docker-py itself posts to the API
    api._result(api.post(api._url("/networks/create"), json=body), json=True)


def ensure_swarm_network(name: str, *, internal: bool, subnet: str, anchor_image: str) -> str:
    """The learner network for swarm services, with the same isolation as the bridge of
    `ensure_network`: a swarm-scoped bridge made from a config-only network with
    inter-container traffic off, attachable (the formgraders' plain containers join it too),
    on a fixed subnet; and its anchor container. Returns the gateway address (the hub's)."""
    c = client()
    net_subnet = ipaddress.ip_network(subnet)
    gateway = str(next(net_subnet.hosts()))
    config = f"{name}-config"
    try:
        net = c.networks.get(name)
    except NotFound:
        try:
            c.networks.get(config)
        except NotFound:
            _create_network({"Name": config, "ConfigOnly": True,
                             "Options": {"com.docker.network.bridge.enable_icc": "false"},
                             "IPAM": {"Driver": "default", "Config": [
                                 {"Subnet": subnet, "Gateway": gateway}]},
                             "Labels": {ROLE_LABEL: "network"}})
        # labels, options and IPAM are the config network's alone (Docker refuses them here)
        _create_network({"Name": name, "Driver": "bridge", "Scope": "swarm",
                         "ConfigFrom": {"Network": config}, "Attachable": True,
                         "Internal": internal})
        net = c.networks.get(name)
    if net.attrs.get("Scope") != "swarm" or bool(net.attrs.get("Internal")) != internal or \
            (net.attrs.get("ConfigFrom") or {}).get("Network") != config:
        raise DockerUnavailable(
            f"Docker network {name} exists with other options (scope, internal or config); "
            f"remove it with `docker network rm {name}` once nothing uses it, or set "
            "spawner.network to another name")
    cfg = c.networks.get(config).attrs
    pools = (cfg.get("IPAM") or {}).get("Config") or []
    if not pools or pools[0].get("Subnet") != subnet:
        raise DockerUnavailable(f"Docker network {config} is not on spawner.swarm_subnet "
                                f"{subnet}; remove {name} and {config} to make them again")
    anchor = SWARM_ANCHOR.format(network=name)
    ctr = find_container(anchor)
    if ctr is None or ctr.status != "running":
        if ctr is not None:
            ctr.remove(force=True)
        kw = run_kwargs(Policy(role="network-anchor", image=anchor_image, name=anchor,
                               entrypoint=("sleep",), command=("infinity",), user="65534:65534",
                               memory="32m", cpus=0.05, pids=8, network=name,
                               labels=(("onelab.network", name),),
                               remove_on_exit=False, logs=False))
        kw["restart_policy"] = {"Name": "unless-stopped"}
        c.containers.run(**kw)
    return gateway


def remove_services(role: str, **labels: str) -> int:
    """Remove the swarm services of a role (their tasks' containers go with them)."""
    c = client()
    if swarm_info().get("LocalNodeState") != "active" or not swarm_info().get("ControlAvailable"):
        return 0
    filters = [f"{ROLE_LABEL}={role}", *(f"{k}={v}" for k, v in labels.items())]
    n = 0
    for svc in c.services.list(filters={"label": filters}):
        with contextlib.suppress(NotFound):
            svc.remove()
            n += 1
    return n

"""Build OneLab's images: base (registry pull or debootstrap), wheelhouse on the host, learner.

Nothing is fetched inside ``docker build``: the base's Debian packages come from debootstrap on
the host (or are already in the registry image), and the learner's Python packages from a
wheelhouse built on the host with ``pip download`` and installed with ``--no-index``. Each
learner image's wheelhouse is exactly its lock (``images/learner/requirements.lock`` for the CPU
image, ``requirements-gpu.lock`` for the GPU one: every package pinned, every file hash-checked on
download and again on install), so one tag is one set of versions. The same wheelhouse and
bootstrap serve offline classrooms.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from images import table
from onelab import dockerdoor
from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import Settings

Echo = Callable[[str], None]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


class BuildError(OneLabError):
    pass


def _step(echo: Echo, n: int, total: int, text: str) -> float:
    echo(f"[{n}/{total}] {text}")
    return time.monotonic()


def _done(echo: Echo, t0: float, text: str) -> None:
    echo(f"      {text} ({time.monotonic() - t0:.0f} s)")


def _run_logged(cmd: list[str], log: Path, echo: Echo) -> None:
    """Run a long command, its output to a log file; on failure show the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        for line in tail:
            echo(f"      | {line}")
        raise BuildError(f"`{cmd[0]} {cmd[1] if len(cmd) > 1 else ''}` failed (exit "
                         f"{proc.returncode}); full log: {log}")


def resolve_base_source(settings: Settings) -> str:
    """registry or bootstrap. 'auto' never touches the network: it uses the registry base only
    when it is already present locally (pulled by an operator or loaded from a bundle)."""
    src = settings.images.base_source
    if src == "auto":
        return "registry" if dockerdoor.image_exists(settings.images.registry_base) else "bootstrap"
    return src


def bootstrap_rootfs(settings: Settings, echo: Echo) -> str:
    """debootstrap Debian bookworm with the base's packages and import it as an image."""
    pkgs = table.debian_packages()
    rootfs_tag = f"{table.REPO}/rootfs:{table.inputs_hash('base', settings)}"
    if dockerdoor.image_exists(rootfs_tag):
        echo(f"      rootfs {rootfs_tag} already imported")
        return rootfs_tag
    if shutil.which("debootstrap") is None:
        raise BuildError(N_("debootstrap is not installed: `apt-get install debootstrap`, or "
                            "set images.base_source=registry where a registry can be reached"))
    if os.geteuid() != 0:
        raise BuildError(N_("bootstrapping the base image needs root (debootstrap); run as "
                            "root"))
    cache = settings.images.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    try:
        root = work / "root"
        echo(f"      debootstrap bookworm from {settings.images.debian_mirror} (~1 min)")
        _run_logged(
            ["debootstrap", "--variant=minbase", f"--include={','.join(pkgs)}", "bookworm",
             str(root), settings.images.debian_mirror],
            cache / "logs" / "debootstrap.log", echo,
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (root / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        tarball = work / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
        dockerdoor.import_image(str(tarball), rootfs_tag)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rootfs_tag


def check_lock(settings: Settings, gpu: bool = False) -> None:
    """The lock must hold the torch that images.torch (images.torch_gpu) asks for: the lock, not
    the setting, is what gets installed, so a setting the lock does not satisfy is an error, not
    a silent swap."""
    lock = table.learner_lock(gpu)
    key = "images.torch_gpu" if gpu else "images.torch"
    torch = table.torch_requirement(settings, gpu)
    try:
        wanted = Requirement(torch)
    except InvalidRequirement as e:
        raise BuildError(f"{key} = {torch!r} is not a requirement: {e}") from None
    pinned = table.locked_versions(lock).get("torch")
    if pinned is None or not wanted.specifier.contains(pinned, prereleases=True):
        raise BuildError(f"{key} is {torch!r} but {lock} pins torch {pinned}: regenerate the "
                         "locks with docker/lock.sh (and commit them)")


def wheelhouse(settings: Settings, gpu: bool, echo: Echo) -> Path:
    """Download every wheel the learner image needs, for bookworm's Python on x86-64, once."""
    name = "learner-gpu" if gpu else "learner"
    target = settings.images.cache_dir / "wheelhouse" / f"{name}-{table.inputs_hash(name, settings)}"
    if (target / ".complete").exists():
        echo(f"      wheelhouse {target} already complete")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    major_minor = "".join(table.PYTHON_VERSION.split(".")[:2])
    cmd = [
        sys.executable, "-m", "pip", "download", "--dest", str(tmp), "--only-binary=:all:",
        "--python-version", table.PYTHON_VERSION, "--implementation", "cp",
        "--abi", f"cp{major_minor}", *(a for p in PLATFORMS for a in ("--platform", p)),
        # One file per pin, its hash checked; the lock already holds every dependency.
        "--require-hashes", "--no-deps", "-r", str(table.learner_lock(gpu)),
    ]
    if settings.images.torch_index_url and not gpu:  # the CPU torch's index; the CUDA one is PyPI's
        cmd += ["--extra-index-url", settings.images.torch_index_url]
    echo(f"      pip download into {target} ({'several GB: CUDA torch' if gpu else '~400 MB'})")
    try:
        _run_logged(cmd, settings.images.cache_dir / "logs" / f"wheelhouse-{name}.log", echo)
        (tmp / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _docker_build(context: Path, tag: str, buildargs: dict[str, str], echo: Echo,
                  labels: dict[str, str] | None = None) -> None:
    def step(line: str) -> None:
        if line.startswith("Step "):
            echo(f"      {line[:110]}")

    try:
        dockerdoor.build_image(str(context), tag, buildargs, labels or {}, step)
    except OneLabError as e:
        raise BuildError(str(e)) from None


def build_base(settings: Settings, echo: Echo) -> str:
    tag = table.tag("base", settings)
    if dockerdoor.image_exists(tag):
        echo(f"      {tag} is up to date")
        return tag
    source = resolve_base_source(settings)
    if source == "registry":
        base_image = settings.images.registry_base
        if not dockerdoor.image_exists(base_image):
            echo(f"      pulling {base_image}")
            try:
                dockerdoor.pull_image(base_image)
            except OneLabError as e:
                raise BuildError(f"{e}; set images.base_source=bootstrap to build it "
                                 "offline") from None
    else:
        base_image = bootstrap_rootfs(settings, echo)
    _docker_build(
        table.TABLE["base"].directory, tag,
        {"BASE_IMAGE": base_image, "PACKAGES": " ".join(table.debian_packages()),
         "ONELAB_INPUTS": tag.split(":")[1], "ONELAB_BASE_SOURCE": source},
        echo,
    )
    return tag


def _version_labels(gpu: bool) -> dict[str, str]:
    """org.onelab.version.<package> for each top-level package (requirements.txt's and torch):
    its version in the image's lock."""
    lines = (table.TABLE["learner"].directory / "requirements.txt").read_text().splitlines()
    names = [Requirement(ln).name for ln in (ln.split("#")[0].strip() for ln in lines) if ln]
    locked = table.locked_versions(table.learner_lock(gpu))
    return {f"org.onelab.version.{pkg}": locked[table.normalize(pkg)] for pkg in [*names, "torch"]}


def build_learner(settings: Settings, gpu: bool, base_tag: str, wheels: Path, echo: Echo) -> str:
    name = "learner-gpu" if gpu else "learner"
    tag = table.tag(name, settings)
    spec = table.TABLE[name]
    with tempfile.TemporaryDirectory(prefix="ctx-", dir=settings.images.cache_dir) as ctx:
        ctxp = Path(ctx)
        shutil.copytree(spec.directory, ctxp, dirs_exist_ok=True)
        for source, dest in table.extra_inputs(name).items():
            shutil.copytree(source, ctxp / dest, ignore=shutil.ignore_patterns("*.pot"))
        (ctxp / "wheels").mkdir()
        for whl in wheels.glob("*.whl"):
            os.link(whl, ctxp / "wheels" / whl.name)  # same file system: no copy
        labels = _version_labels(gpu)
        labels["org.onelab.variant"] = "gpu" if gpu else "cpu"
        buildargs = {"BASE_IMAGE": base_tag, "ONELAB_INPUTS": tag.split(":")[1],
                     "LOCK": table.learner_lock(gpu).name}
        _docker_build(ctxp, tag, buildargs, echo, labels=labels)
    return tag


def build(settings: Settings, gpu: bool = False, echo: Echo = print) -> str:
    """Build what is missing (base, wheelhouse, learner) and return the learner image's tag."""
    name = "learner-gpu" if gpu else "learner"
    tag = table.tag(name, settings)
    total = 3
    check_lock(settings, gpu)
    dockerdoor.client()
    t = _step(echo, 1, total, f"base image {table.tag('base', settings)}")
    base = build_base(settings, echo)
    _done(echo, t, "base ready")
    if dockerdoor.image_exists(tag):
        echo(f"[2/{total}] wheelhouse: not needed")
        echo(f"[3/{total}] {tag} is up to date")
        return tag
    t = _step(echo, 2, total, "wheelhouse on the host")
    wheels = wheelhouse(settings, gpu, echo)
    _done(echo, t, f"{sum(1 for _ in wheels.glob('*.whl'))} wheels")
    t = _step(echo, 3, total, f"{name} image {tag}")
    build_learner(settings, gpu, base, wheels, echo)
    _done(echo, t, f"built {tag}")
    return tag


def image_versions(tag: str) -> dict[str, str]:
    """The version labels an image carries (for `onelab images list`)."""
    labels = dockerdoor.image_labels(tag)
    return {k.removeprefix("org.onelab."): v for k, v in labels.items() if k.startswith("org.onelab.")}

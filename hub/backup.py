"""`onelab backup` and `onelab restore`: the whole platform in one file, and back.

One uncompressed tar, mode 0600 (it holds the secrets and every account's password hash)::

    state/...                   the state directory's own files, modes and owners kept: secrets
                                (cookie secret, tokens, the local CA), preferences, the audit
                                log, and the exchange (released files, submissions, feedback)
    hub/jupyterhub.sqlite       the hub database (accounts, lock-outs, JupyterHub's tables) as
    hub/database.pgdump         an SQLite online-backup snapshot, or PostgreSQL's pg_dump -Fc
    courses/<id>.tar            each course's nbgrader folder, its gradebook.db a snapshot
    volumes/<name>.tar          each learner home (kept ones too) and the datasets volume
    settings/onelab.yaml        the settings file in force, if any
    manifest.json               last: sha256 and size of every member, OneLab's version, the
                                learner image, the volumes with their labels and counts

Consistent while the platform runs: both databases are copied with SQLite's backup API (or
pg_dump, one transaction); the exchange only ever renames whole submissions into place, so a
copy has each one whole or not at all (uploads in flight are left out); a learner's running
container is paused (frozen, not stopped) while their home is read. Restoring refuses while
the platform runs, checks every checksum before it writes anything, and never overwrites: a
state directory, database or volume already there is refused, or with ``force`` moved aside
under a dated name first. docs/backup.md says the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import Settings, config_file

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "hub/jupyterhub.sqlite"
PG_MEMBER = "hub/database.pgdump"
SETTINGS_MEMBER = "settings/onelab.yaml"
STAFF_USER = "1000:1000"
# Left out of state/: rebuilt by `onelab up` (supervisor, runtime.json, pid files, the
# formgraders' generated config), copied apart (courses, the hub database), or half-made
# (uploads and submissions being unpacked). Logs are not state, but the audit log is.
SKIP_TOP = {"courses", "supervisor", "formgraders", "runtime.json", ".runtime.json.tmp"}
DB_SUFFIXES = ("", "-journal", "-wal", "-shm")
# What a state directory may hold and still count as empty: a command's audit line.
EMPTY_ENOUGH = {"logs", "logs/audit.log"}

Say = Callable[..., None]


class BackupError(OneLabError):
    """A backup that cannot be made, or an archive that cannot be restored."""


def english(template: str, **params: Any) -> None:
    print(template.format(**params), flush=True)


def utc_stamp(when: datetime | None = None) -> str:
    return f"{(when or datetime.now(UTC)).astimezone(UTC):%Y%m%dT%H%M%SZ}"


def default_dest(settings: Settings) -> Path:
    """Beside the state directory, never in it: `<state_dir>-backups/onelab-<UTC>.tar`."""
    state = settings.state_dir.resolve()
    return state.parent / f"{state.name}-backups" / f"onelab-{utc_stamp()}.tar"


def onelab_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onelab")
    except PackageNotFoundError:
        return "unknown"


def sqlite_path(settings: Settings) -> Path | None:
    """The hub database's file when it is SQLite, else None (PostgreSQL)."""
    url = settings.db_url
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def home_pattern(settings: Settings) -> re.Pattern[str]:
    """Names of learner homes (spawner.home_volume for any user), and of the ones `users
    remove` keeps aside (`<home>.removed-<UTC>`)."""
    from hub.accounts import home_volume

    mark = "zzusernamezz"
    before, _, after = home_volume(settings, mark).partition(mark)
    return re.compile(re.escape(before) + r"[a-z0-9-]+" + re.escape(after)
                      + r"(\.removed-\d{8}T\d{6}Z)?")


def volumes_to_save(settings: Settings) -> list[str]:
    from onelab import dockerdoor

    pattern = home_pattern(settings)
    return [v for v in dockerdoor.volume_names()
            if pattern.fullmatch(v) or v == settings.spawner.datasets_volume]


# -- writing the archive ----------------------------------------------------------------------

class _Hashing:
    """A file read through, its sha256 counted on the way (tarfile copies from it)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.sha = fh, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.sha.update(data)
        return data


class _Writer:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members: dict[str, dict[str, Any]] = {}

    def add_file(self, name: str, fh: BinaryIO, size: int, *, mode: int = 0o600,
                 uid: int = 0, gid: int = 0, mtime: float | None = None) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid = size, mode, uid, gid
        info.mtime = int(mtime if mtime is not None else datetime.now(UTC).timestamp())
        reader = _Hashing(fh)
        self.tar.addfile(info, reader)
        self.members[name] = {"sha256": reader.sha.hexdigest(), "size": size}

    def add_spooled(self, name: str, path: Path, **extra: Any) -> None:
        with path.open("rb") as fh:
            self.add_file(name, fh, os.fstat(fh.fileno()).st_size)
        self.members[name].update(extra)
        path.unlink()

    def add_state(self, top: Path) -> None:
        """The state directory's files as they are now: each opened once (never through a
        link) and read to the size it had then, so a file replaced or appended meanwhile is
        taken whole as it was."""
        for d, dirs, files in os.walk(top):
            rel_dir = Path(d).relative_to(top)
            dirs[:] = sorted(n for n in dirs if _kept(rel_dir / n))
            for n in [*dirs, *sorted(files)]:
                rel = rel_dir / n
                if not _kept(rel):
                    continue
                path, name = Path(d) / n, f"state/{rel.as_posix()}"
                st = os.lstat(path)
                if os.path.isdir(path) and not os.path.islink(path):
                    info = tarfile.TarInfo(name)
                    info.type, info.mode = tarfile.DIRTYPE, st.st_mode & 0o7777
                    info.uid, info.gid, info.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
                    self.tar.addfile(info)
                elif os.path.islink(path):
                    info = tarfile.TarInfo(name)
                    info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                    self.tar.addfile(info)
                    self.members[name] = {"link": info.linkname}
                elif os.path.isfile(path):
                    try:
                        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                    except FileNotFoundError:
                        continue  # gone since the listing (e.g. a temp file renamed away)
                    with os.fdopen(fd, "rb") as fh:
                        st = os.fstat(fd)
                        self.add_file(name, fh, st.st_size, mode=st.st_mode & 0o7777,
                                      uid=st.st_uid, gid=st.st_gid, mtime=st.st_mtime)


def _kept(rel: Path) -> bool:
    parts = rel.parts
    if not parts:
        return True
    if parts[0] in SKIP_TOP or parts[0].endswith(".pid") or parts[0] == "jupyterhub.sqlite" \
            or any(parts[0] == "jupyterhub.sqlite" + s for s in DB_SUFFIXES):
        return False
    if parts[0] == "logs":
        return len(parts) == 1 or parts[1] == "audit.log"
    if parts[0] == "exchange" and len(parts) >= 2:
        return parts[1] != ".uploads" and not (len(parts) >= 3 and parts[2] == ".incoming")
    return True


def _sqlite_snapshot(src: Path, dst: Path) -> None:
    """SQLite's online backup: a consistent copy while the hub writes."""
    conn = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    out = sqlite3.connect(dst)
    try:
        conn.backup(out)
    finally:
        out.close()
        conn.close()


def pg_tool(name: str) -> str:
    import glob

    found = shutil.which(name) or next(iter(sorted(glob.glob(
        f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise BackupError(N_("the hub database is PostgreSQL, and PostgreSQL's {tool} is not "
                             "installed (Debian: apt-get install postgresql-client)"), tool=name)
    return found


def pg_env(db_url: str) -> dict[str, str]:
    """libpq's environment for a database URL: the password travels there, never on a
    command line that `ps` shows."""
    from sqlalchemy.engine import make_url

    u = make_url(db_url)
    env = dict(os.environ)
    for key, value in (("PGHOST", u.host), ("PGPORT", u.port), ("PGUSER", u.username),
                       ("PGPASSWORD", u.password), ("PGDATABASE", u.database)):
        if value is not None:
            env[key] = str(value)
    return env


def _pg(tool: str, args: list[str], db_url: str, **kw: Any) -> None:
    proc = subprocess.run([pg_tool(tool), *args], env=pg_env(db_url), capture_output=True,
                          check=False, **kw)
    if proc.returncode != 0:
        why = (proc.stderr or b"").decode("utf-8", "replace").strip()[-400:]
        raise BackupError(N_("{tool} failed: {why}"), tool=tool, why=why)


def backup(settings: Settings, dest: Path | None = None, say: Say = english) -> Path:
    """Write the whole platform into one archive at `dest` (default: `default_dest`); works
    while the platform runs. Returns the archive's path."""
    from images.table import learner_image
    from onelab import dockerdoor

    state = settings.state_dir
    if not state.is_dir():
        raise BackupError(N_("no state directory {path}: nothing to back up"), path=state)
    dest = (dest or default_dest(settings)).resolve()
    if dest.exists():
        raise BackupError(N_("{path} exists already; name another file"), path=dest)
    if dest.is_relative_to(state.resolve()):
        raise BackupError(N_("{path} is inside the state directory; put backups elsewhere"),
                          path=dest)
    dockerdoor.client()
    image = learner_image(settings)
    dockerdoor.require_image(image, "learner image (reads the homes)")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = dest.with_name(dest.name + ".partial")
    spool = Path(tempfile.mkdtemp(prefix=".onelab-backup-", dir=dest.parent))
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    done = False
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w",
                                                      format=tarfile.PAX_FORMAT) as tar:
            w = _Writer(tar)
            manifest = _write_all(settings, w, spool, image, say)
            manifest["members"] = w.members
            data = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(data), 0o600, int(datetime.now(UTC).timestamp())
            tar.addfile(info, io.BytesIO(data))
            tar.close()
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, dest)
        done = True
    finally:
        shutil.rmtree(spool, ignore_errors=True)
        if not done:
            partial.unlink(missing_ok=True)
    say(N_("backup written: {path} ({size} MiB, {members} files)"), path=dest,
        size=f"{dest.stat().st_size / 2**20:.1f}", members=len(w.members))
    return dest


def _write_all(settings: Settings, w: _Writer, spool: Path, image: str,
               say: Say) -> dict[str, Any]:
    from hub.coursework import course_root
    from onelab import dockerdoor

    manifest: dict[str, Any] = {
        "format": FORMAT, "onelab_version": onelab_version(), "learner_image": image,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(), "state_dir": str(settings.state_dir),
        "container_prefix": settings.spawner.container_prefix}
    db = sqlite_path(settings)
    if db is not None:
        manifest["database"] = "sqlite"
        if db.exists():
            _sqlite_snapshot(db, spool / "hub.sqlite")
            w.add_spooled(SQLITE_MEMBER, spool / "hub.sqlite")
    else:
        manifest["database"] = "postgresql"
        _pg("pg_dump", ["--format=custom", "--no-owner", "--file", str(spool / "hub.pgdump")],
            settings.db_url)
        w.add_spooled(PG_MEMBER, spool / "hub.pgdump")
    say(N_("hub database: {kind} ({what})"), kind=manifest["database"],
        what="accounts, users, tokens, lock-outs")
    w.add_state(settings.state_dir)
    say(N_("state directory: secrets, preferences, audit log and the exchange"))
    courses = sorted(p.name for p in (settings.state_dir / "courses").glob("*") if p.is_dir()
                     and not p.is_symlink())
    for course in courses:
        spooled = spool / f"course-{course}.tar"
        with spooled.open("wb") as fh:
            counts = dockerdoor.export_tree(str(course_root(settings, course)), fh, image,
                                            user=STAFF_USER, sqlite=("gradebook.db",))
        w.add_spooled(f"courses/{course}.tar", spooled, counts=counts)
        say(N_("course {course}: {entries} files and folders, gradebook included"),
            course=course, entries=counts["entries"])
    manifest["courses"] = courses
    manifest["volumes"] = []
    for name in volumes_to_save(settings):
        spooled = spool / f"volume-{name}.tar"
        with spooled.open("wb") as fh:
            counts = dockerdoor.export_tree(name, fh, image, pause=True)
        w.add_spooled(f"volumes/{name}.tar", spooled, counts=counts)
        manifest["volumes"].append({"name": name, "labels": dockerdoor.volume_labels(name),
                                    "member": f"volumes/{name}.tar", "counts": counts})
        say(N_("volume {name}: {entries} files and folders, {size} bytes"), name=name,
            entries=counts["entries"], size=counts["bytes"])
    cfg = config_file()
    manifest["settings_file"] = str(cfg.resolve()) if cfg is not None else None
    if cfg is not None:
        with cfg.open("rb") as fh:
            w.add_file(SETTINGS_MEMBER, fh, os.fstat(fh.fileno()).st_size)
    return manifest


# -- reading and checking an archive ---------------------------------------------------------

def read_manifest(src: Path) -> dict[str, Any]:
    if not src.is_file():
        raise BackupError(N_("no backup {path}"), path=src)
    try:
        with tarfile.open(src, mode="r:") as tar:
            fh = tar.extractfile(tar.getmember(MANIFEST))
            assert fh is not None
            manifest = json.loads(fh.read())
    except KeyError:
        raise BackupError(N_("{path} has no manifest.json: not a OneLab backup, or cut short "
                             "(the manifest is written last)"), path=src) from None
    except (tarfile.TarError, OSError, ValueError) as e:
        raise BackupError(N_("{path} cannot be read as a OneLab backup ({why}); it may be cut "
                             "short or damaged"), path=src, why=e) from None
    if manifest.get("format") != FORMAT:
        raise BackupError(N_("{path} is a backup of format {got}; this OneLab reads format "
                             "{want}"), path=src, got=manifest.get("format"), want=FORMAT)
    return manifest


def verify(src: Path) -> dict[str, Any]:
    """Every member's checksum against the manifest; names each one missing, cut short or
    different. Returns the manifest with each member's data offset (for restoring)."""
    manifest = read_manifest(src)
    want = manifest["members"]
    bad: list[str] = []
    seen: set[str] = set()
    try:
        with tarfile.open(src, mode="r:") as tar:
            for info in tar:
                if info.name not in want or "link" in want[info.name]:
                    continue
                seen.add(info.name)
                fh = tar.extractfile(info)
                sha = hashlib.sha256()
                while fh is not None and (chunk := fh.read(1 << 20)):
                    sha.update(chunk)
                if info.size != want[info.name]["size"] or sha.hexdigest() != \
                        want[info.name]["sha256"]:
                    bad.append(f"{info.name} (checksum differs)")
                want[info.name]["offset"] = info.offset_data
    except (tarfile.TarError, OSError) as e:
        bad.append(f"the archive breaks off ({e})")
    bad += [f"{n} (missing)" for n in sorted(set(want) - seen) if "link" not in want[n]]
    if bad:
        raise BackupError(N_("{path} is damaged, nothing was restored: {problems}"), path=src,
                          problems=", ".join(bad[:10]) + (f" and {len(bad) - 10} more"
                                                           if len(bad) > 10 else ""))
    return manifest


@contextlib.contextmanager
def _member_pipe(src: Path, offset: int, size: int) -> Iterator[BinaryIO]:
    """A member's bytes on a pipe (for a helper container's stdin), fed by a thread."""
    r, w = os.pipe()

    def feed() -> None:
        with src.open("rb") as fh, os.fdopen(w, "wb", buffering=0) as out:
            fh.seek(offset)
            left = size
            try:
                while left and (chunk := fh.read(min(left, 1 << 20))):
                    out.write(chunk)
                    left -= len(chunk)
            except BrokenPipeError:
                pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    with os.fdopen(r, "rb") as reader:
        yield reader
    t.join(timeout=30)


# -- restoring -------------------------------------------------------------------------------

def platform_running(settings: Settings) -> list[str]:
    """What of this platform runs (supervisord, learner or grading containers); [] when
    nothing does."""
    from hub import supervise
    from onelab import dockerdoor

    running = []
    pid = supervise.supervisord_pid(settings)
    if pid:
        running.append(f"supervisord (pid {pid})")
    instance = {"onelab.instance": settings.spawner.container_prefix}
    running += [f"container {c.name}" for role in ("learner", "formgrader")
                for c in dockerdoor.containers(role, **instance) if c.status == "running"]
    return running


def _state_in_use(state: Path) -> list[str]:
    if not state.exists():
        return []
    found = [p.relative_to(state).as_posix() for p in state.rglob("*")]
    return sorted(p for p in found if p not in EMPTY_ENOUGH)


def restore(settings: Settings, src: Path, *, force: bool = False,
            say: Say = english) -> dict[str, Any]:
    """Bring a backup back onto this machine's (fresh, stopped) platform: the state directory,
    the hub database, the courses, the volumes by their names, the settings file.

    Refuses while the platform runs, and checks every checksum before it changes anything.
    Nothing already there is overwritten: a state directory that is not empty, a database
    with tables or a volume of the same name is refused, or with `force` moved aside first
    (`<state_dir>.before-restore-<UTC>`, `<volume>.before-restore-<UTC>`, the old PostgreSQL
    database dumped into the moved state directory)."""
    from images.table import learner_image
    from onelab import dockerdoor

    src = src.resolve()
    dockerdoor.client()
    running = platform_running(settings)
    if running:
        raise BackupError(N_("the platform is running ({what}); stop it with `onelab down` "
                             "and run this again; nothing was changed"), what=", ".join(running))
    manifest = verify(src)
    say(N_("{path}: every checksum matches (OneLab {version}, made {created} on {host})"),
        path=src, version=manifest["onelab_version"], created=manifest["created"],
        host=manifest["host"])
    if (manifest["database"] == "sqlite") != (sqlite_path(settings) is not None):
        raise BackupError(N_("the backup's hub database is {theirs}, and hub.db_url here is "
                             "{ours}; set hub.db_url to match, then restore"),
                          theirs=manifest["database"],
                          ours="sqlite" if sqlite_path(settings) else "postgresql")
    image = learner_image(settings)
    dockerdoor.require_image(image, "learner image (writes the homes)")
    state = settings.state_dir
    clash_state = _state_in_use(state)
    clash_volumes = [v["name"] for v in manifest["volumes"]
                     if dockerdoor.volume_exists(v["name"])]
    db = sqlite_path(settings)
    clash_db = db is not None and db.exists() and not db.is_relative_to(state)
    clash_pg = db is None and _pg_has_tables(settings.db_url)
    if not force and (clash_state or clash_volumes or clash_db or clash_pg):
        what = ([f"state directory {state} ({', '.join(clash_state[:3])}"
                 f"{', ...' if len(clash_state) > 3 else ''})"] if clash_state else []) + \
            [f"volume {v}" for v in clash_volumes] + \
            ([f"database {db}"] if clash_db else []) + \
            (["the PostgreSQL database of hub.db_url (it has tables)"] if clash_pg else [])
        raise BackupError(N_("not restoring over what is there: {what}; restore onto a fresh "
                             "state, or add --force to move it aside first (nothing is "
                             "deleted); nothing was changed"), what="; ".join(what))
    stamp = utc_stamp()
    aside = state.with_name(f"{state.name}.before-restore-{stamp}")
    if clash_state:
        state.rename(aside)
        say(N_("moved aside: {old} is now {new}"), old=state, new=aside)
    audit_log = state / "logs" / "audit.log"
    earlier = audit_log.read_bytes() if audit_log.is_file() else b""
    audit_log.unlink(missing_ok=True)  # kept: its lines go after the backup's own
    if clash_db:
        assert db is not None
        aside.mkdir(mode=0o700, exist_ok=True)
        for suffix in DB_SUFFIXES:
            old = db.with_name(db.name + suffix)
            if old.exists():
                old.rename(aside / old.name)
        say(N_("moved aside: {old} is now {new}"), old=db, new=aside / db.name)
    if clash_pg:
        aside.mkdir(mode=0o700, exist_ok=True)
        _pg("pg_dump", ["--format=custom", "--no-owner", "--file",
                        str(aside / "database.pgdump")], settings.db_url)
        say(N_("the PostgreSQL database as it was is kept in {path}"),
            path=aside / "database.pgdump")
    for name in clash_volumes:
        kept = f"{name}.before-restore-{stamp}"
        dockerdoor.copy_volume(name, kept, image, labels={
            **dockerdoor.volume_labels(name), "onelab.kept-from": name})
        dockerdoor.remove_volume(name)
        say(N_("moved aside: {old} is now {new}"), old=f"volume {name}", new=kept)

    from hub.state import ensure_state_dir

    ensure_state_dir(state)
    _restore_state(src, manifest, state)
    if earlier:
        fd = os.open(audit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(earlier)
    say(N_("state directory restored: {path}"), path=state)
    _restore_database(settings, src, manifest, clean=clash_pg)
    say(N_("hub database restored ({kind}); the hub upgrades it, if this OneLab is newer, "
           "when it starts"), kind=manifest["database"])
    from hub.coursework import course_root
    from hub.formgrader import prepare_root

    for course in manifest["courses"]:
        member = manifest["members"][f"courses/{course}.tar"]
        root = course_root(settings, course)
        prepare_root(root)
        with _member_pipe(src, member["offset"], member["size"]) as pipe:
            got = dockerdoor.import_tree(str(root), pipe, image, user=STAFF_USER)
        _check_counts(f"course {course}", member.get("counts"), got)
        say(N_("course {course}: {entries} files and folders, gradebook included"),
            course=course, entries=got["entries"])
    for vol in manifest["volumes"]:
        member = manifest["members"][vol["member"]]
        with _member_pipe(src, member["offset"], member["size"]) as pipe:
            got = dockerdoor.import_tree(vol["name"], pipe, image, labels=vol["labels"])
        _check_counts(f"volume {vol['name']}", vol["counts"], got)
        say(N_("volume {name}: {entries} files and folders, {size} bytes"), name=vol["name"],
            entries=got["entries"], size=got["bytes"])
    _restore_settings(src, manifest, stamp, say)
    return manifest


def _check_counts(what: str, want: dict[str, int] | None, got: dict[str, int]) -> None:
    if got.get("refused") or (want and (want["entries"], want["bytes"]) !=
                              (got["entries"], got["bytes"])):
        raise BackupError(N_("{what} came back different from its backup ({want} vs {got} "
                             "files and bytes, {refused} entries refused)"), what=what,
                          want=want and [want["entries"], want["bytes"]],
                          got=[got["entries"], got["bytes"]], refused=got.get("refused", 0))


def _safe(top: Path, name: str) -> Path:
    rel = Path(os.path.normpath(name))
    if rel.is_absolute() or rel.parts[:1] == ("..",):
        raise BackupError(N_("the backup names a path outside its folder: {name}"), name=name)
    return top / rel


def _restore_state(src: Path, manifest: dict[str, Any], state: Path) -> None:
    """state/ members into the state directory: folders, files and links, owners and modes as
    they were; never through a link, never over a file (the directory is fresh)."""
    dirs = []
    with tarfile.open(src, mode="r:") as tar:
        for info in tar:
            if not info.name.startswith("state/"):
                continue
            dest = _safe(state, info.name.removeprefix("state/"))
            if not dest.parent.resolve().is_relative_to(state.resolve()):
                raise BackupError(N_("the backup names a path outside its folder: {name}"),
                                  name=info.name)
            if info.isdir():
                dest.mkdir(parents=True, exist_ok=True)
                dirs.append((info, dest))
            elif info.issym():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(info.linkname, dest)
            elif info.isreg():
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             info.mode & 0o777)
                fh = tar.extractfile(info)
                assert fh is not None
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(fh, out)
                    _own(out.fileno(), info)
                os.utime(dest, (info.mtime, info.mtime), follow_symlinks=False)
    for info, dest in reversed(dirs):
        os.chown(dest, info.uid, info.gid, follow_symlinks=False)
        os.chmod(dest, info.mode & 0o7777)
    os.chmod(state, 0o700)


def _own(fd: int, info: tarfile.TarInfo) -> None:
    if os.geteuid() == 0:
        os.fchown(fd, info.uid, info.gid)
    os.fchmod(fd, info.mode & 0o7777)


def _restore_database(settings: Settings, src: Path, manifest: dict[str, Any],
                      clean: bool) -> None:
    members = manifest["members"]
    db = sqlite_path(settings)
    if db is not None:
        if SQLITE_MEMBER not in members:
            return  # the backup's platform had not made its database yet
        db.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out, src.open("rb") as fh:
            fh.seek(members[SQLITE_MEMBER]["offset"])
            left = members[SQLITE_MEMBER]["size"]
            while left and (chunk := fh.read(min(left, 1 << 20))):
                out.write(chunk)
                left -= len(chunk)
        return
    with tempfile.NamedTemporaryFile(dir=settings.state_dir, suffix=".pgdump") as tmp:
        with src.open("rb") as fh:
            fh.seek(members[PG_MEMBER]["offset"])
            left = members[PG_MEMBER]["size"]
            while left and (chunk := fh.read(min(left, 1 << 20))):
                tmp.write(chunk)
                left -= len(chunk)
        tmp.flush()
        _pg("pg_restore", ["--no-owner", "--single-transaction", "--exit-on-error",
                           *(["--clean", "--if-exists"] if clean else []),
                           "--dbname", pg_env(settings.db_url).get("PGDATABASE", ""),
                           tmp.name], settings.db_url)


def _pg_has_tables(db_url: str) -> bool:
    import sqlalchemy as sa

    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1)
                              if db_url.startswith("postgresql://") else db_url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text(
                "select count(*) from information_schema.tables where table_schema = "
                "'public'")).scalar())
    except sa.exc.OperationalError as e:
        raise BackupError(N_("cannot reach the PostgreSQL database of hub.db_url: {why}"),
                          why=str(e.orig).strip().splitlines()[0]) from None
    finally:
        engine.dispose()


def _restore_settings(src: Path, manifest: dict[str, Any], stamp: str, say: Say) -> None:
    """The backed-up settings file goes where a settings file is in force now (or where it
    was); one that is there and differs is left as it is, the backup's copy beside it."""
    if SETTINGS_MEMBER not in manifest["members"]:
        return
    with tarfile.open(src, mode="r:") as tar:
        fh = tar.extractfile(SETTINGS_MEMBER)
        assert fh is not None
        data = fh.read()
    now = config_file()
    target = now.resolve() if now is not None else Path(manifest["settings_file"])
    if target.exists() and target.read_bytes() == data:
        say(N_("settings file {path}: the same as in the backup"), path=target)
        return
    if target.exists():
        target = target.with_name(f"{target.name}.restored-{stamp}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    say(N_("settings file of the backup written to {path}; the settings in force are read "
           "at the next `onelab up`"), path=target)

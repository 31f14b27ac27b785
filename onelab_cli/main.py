"""`onelab`: the one command for operators and instructors. A thin layer over the packages.

Every OneLabError becomes ``onelab: <one line>`` on stderr and exit status 2. The command speaks
Korean or English, as ``onelab.i18n.cli_language`` decides (``ONELAB_LANG``, else the locale,
else English); its words are msgids of OneLab's catalogue.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from onelab import i18n
from onelab.errors import OneLabError
from onelab.settings import Settings, load, redacted, reference

_lang = i18n.SOURCE
"""The command's language, decided once by main()."""


def _(message: str) -> str:
    """One of the command's messages in its language."""
    return i18n.gettext(_lang)(message)


def _echo(text: str, err: bool = False) -> None:
    print(text, flush=True, file=sys.stderr if err else sys.stdout)


def _pad(text: str, width: int) -> str:
    """`text` filled with spaces to `width` terminal columns (a Hangul syllable takes two)."""
    cols = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(width - cols, 0)


def cmd_up(s: Settings, a: argparse.Namespace) -> int:
    from hub import runtime

    runtime.start(s, _echo)
    _echo(_("OneLab is up at {url}").format(url=s.public_url))
    if a.detach:
        return 0
    _echo(_("(following the hub's log; Ctrl-C stops the platform)"))

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill`/systemd stop the platform as Ctrl-C does

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        runtime.follow(s, _echo)
    except KeyboardInterrupt:
        _echo(_("stopping..."))
    finally:
        runtime.stop(s, echo=_echo)
    return 0


def cmd_down(s: Settings, a: argparse.Namespace) -> int:
    from hub import runtime

    runtime.stop(s, keep_servers=a.keep_servers, echo=_echo)
    return 0


def cmd_status(s: Settings, a: argparse.Namespace) -> int:
    from hub import runtime

    st = runtime.status(s)
    if a.json:
        _echo(json.dumps(st, default=str))
    else:
        def line(label: str, value: str) -> None:
            _echo(f"{_pad(label, 8)} {value}")

        def pid(p: int | None) -> str:
            return _("pid {pid}").format(pid=p) if p else _("stopped")

        health = _("healthy") if st["healthy"] else _("not answering")
        line(_("url"), f"{st['url']}  ({health})")
        _echo(_("processes"))  # supervisord, proxy, hub, exchange, formgraders: supervisord's states
        for proc in st["processes"]:
            _echo(f"  {proc['name']:<24} {_pad(pid(proc['pid']), 14)} {proc['state']}".rstrip())
        docker = st["docker"]
        line("Docker", (_("Docker Engine {version}, pid {pid}").format(
            version=docker["version"], pid=docker["pid"] or "?") if docker["running"]
            else _("not answering: {why}").format(why=docker.get("error", ""))))
        line(_("image"), st["image"])
        fw = st["firewall"]
        line(_("firewall"), (_("off (spawner.host_firewall: false)") if not fw["enabled"] else
                             _("{n} rule(s)").format(n=len(fw["rules"])) if fw["rules"] else
                             _("not installed (run `onelab up`)"))
             + "".join(f"\n  {r}" for r in fw["rules"]))
        learners = st["learners"]
        line(_("learners"), _("{n} container(s)").format(n=len(learners)) + "".join(
            f"\n  {u:<24} {state}" for u, state in learners))
    return 0 if st["healthy"] else 1


def cmd_token(s: Settings, a: argparse.Namespace) -> int:
    from hub.state import admin_token

    _echo(admin_token(s.state_dir))
    return 0


def _accounts(s: Settings):
    from hub.accounts import Accounts

    return Accounts(s.db_url, s.auth.min_password_length)


def cmd_users_add(s: Settings, a: argparse.Namespace) -> int:
    from hub.accounts import fresh_home_check, generate_password, list_on_hub

    name = a.name.lower()
    accounts = _accounts(s)
    accounts.check_name(name)
    notes = [] if accounts.get(name) else fresh_home_check(s, name)
    password = a.password or generate_password()
    acct = accounts.add(name, password, admin=a.admin, full_name=a.full_name or "")
    _echo((_("added {name} (admin)") if acct.admin else _("added {name}")).format(name=acct.name))
    if not a.password:
        _echo(_("password: {password}").format(password=password))
    for line in notes:
        _echo(line)
    for line in list_on_hub(s, [acct.name]):  # after the notes: they stand even if this fails
        _echo(line)
    return 0


def cmd_users_import(s: Settings, a: argparse.Namespace) -> int:
    from hub.accounts import fresh_home_check, list_on_hub

    try:
        text = Path(a.csv).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise OneLabError(i18n.N_("cannot read class list {path}: {why}"), path=a.csv,
                          why=e.strerror) from None
    notes: list[str] = []
    generated = _accounts(s).import_csv(text, replace=a.replace,
                                        check_new=lambda n: notes.extend(fresh_home_check(s, n)))
    lines = ["username,password", *(f"{n},{p}" for n, p in generated)]
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
        _echo(_("imported; {n} generated password(s) written to {path}").format(
            n=len(generated), path=a.out))
    else:
        _echo(_("imported"))
        if generated:
            _echo("\n".join(lines))
    for note in dict.fromkeys(notes):
        _echo(note)
    for line in list_on_hub(s):  # every account: the whole class in step
        _echo(line)
    return 0


def cmd_users_list(s: Settings, a: argparse.Namespace) -> int:
    for acct in _accounts(s).all():
        _echo(f"{acct.name:<24} {'admin' if acct.admin else '':<6} {acct.full_name}")
    return 0


def cmd_users_passwd(s: Settings, a: argparse.Namespace) -> int:
    from hub.accounts import generate_password

    password = a.password or generate_password()
    _accounts(s).set_password(a.name, password)
    _echo(_("password of {name} changed").format(name=a.name)
          + ("" if a.password else f": {password}"))
    if _lockout(s).unlock("account", a.name):  # a new password is a fresh start
        _echo(_("{name}'s login lock is lifted too").format(name=a.name))
    return 0


def _lockout(s: Settings):
    from hub.lockout import Lockout, Policy

    return Lockout(s.db_url, Policy.from_settings(s.auth.lockout))


def cmd_users_locks(s: Settings, a: argparse.Namespace) -> int:
    from datetime import UTC

    lockout = _lockout(s)
    entries, now = lockout.entries(), lockout.now()
    if not entries:
        _echo(_("no locks, and no failed logins being counted"))
    for e in entries:
        kind = _("account") if e.kind == "account" else _("address")
        until = (_("locked until {time}").format(time=e.locked_until.replace(tzinfo=UTC)
                                                  .astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"))
                 if e.locked_until and e.locked(now) else _("not locked"))
        _echo(f"{_pad(kind, 8)} {e.key:<40} "
              + _("{n} failure(s)").format(n=e.failures) + f"  {until}")
    return 0


def cmd_users_unlock(s: Settings, a: argparse.Namespace) -> int:
    from hub.lockout import ACCOUNT, ADDRESS, address_of

    if bool(a.name) == bool(a.address):
        raise OneLabError(i18n.N_("name an account or give --address IP, one of them"))
    if a.address and not address_of(a.address):
        raise OneLabError(i18n.N_("{address} is not an IP address"), address=a.address)
    kind, key = (ACCOUNT, a.name.lower()) if a.name else (ADDRESS, address_of(a.address) or "")
    lifted = _lockout(s).unlock(kind, key)
    _echo((_("unlocked {key}: its failed logins are forgotten") if lifted else
           _("{key} was not locked and had no failed logins")).format(key=key))
    return 0


def cmd_users_remove(s: Settings, a: argparse.Namespace) -> int:
    from hub.accounts import remove_user

    r = remove_user(s, a.name.lower(), delete_home=a.delete_home, echo=_echo)
    _echo(_("removed {name}; home kept as {volume}").format(name=r.name, volume=r.kept_as)
          if r.kept_as else
          _("removed {name}; home deleted").format(name=r.name) if r.home_deleted else
          _("removed {name}").format(name=r.name))
    return 0


def cmd_users_restore_home(s: Settings, a: argparse.Namespace) -> int:
    from hub.accounts import restore_home

    restore_home(s, a.name.lower(), a.volume, echo=_echo)
    return 0


def cmd_images_build(s: Settings, a: argparse.Namespace) -> int:
    from images.build import build

    tag = build(s, gpu=a.gpu, echo=_echo)
    _echo(_("learner image: {tag}").format(tag=tag))
    return 0


def cmd_images_list(s: Settings, a: argparse.Namespace) -> int:
    from images import table
    from images.build import image_versions

    for name in table.TABLE:
        tag = table.tag(name, s)
        v = image_versions(tag)
        state = _("built") if v else _("not built")
        extra = ", ".join(f"{k.removeprefix('version.')}={val}" for k, val in sorted(v.items())
                          if k.startswith("version."))
        _echo(f"{tag:<36} {state}{'  ' + extra if extra else ''}")
    return 0


def _say(template: str, **params: Any) -> None:
    """A line of hub/ code (an N_-marked template and its values) in the command's language."""
    _echo(_(template).format(**params))


def cmd_backup(s: Settings, a: argparse.Namespace) -> int:
    from hub.backup import backup

    backup(s, Path(a.dest) if a.dest else None, say=_say)
    return 0


def cmd_restore(s: Settings, a: argparse.Namespace) -> int:
    from hub.backup import restore, verify

    if a.check:
        manifest = verify(Path(a.src).resolve())
        _echo(_("{path}: every checksum matches ({members} files, {volumes} volumes)").format(
            path=a.src, members=len(manifest["members"]), volumes=len(manifest["volumes"])))
        return 0
    restore(s, Path(a.src), force=a.force, say=_say)
    _echo(_("restored; start the platform with `onelab up`"))
    return 0


def cmd_settings(s: Settings, a: argparse.Namespace) -> int:
    if a.reference:
        _echo(reference())
    else:
        _echo(json.dumps(redacted(s), indent=2, ensure_ascii=False))  # no secret
    return 0


def cmd_tls_show(s: Settings, a: argparse.Namespace) -> int:
    from onelab import tls

    tls.ensure(s)  # what `onelab up` serves: made or renewed now if needed
    info = tls.describe(s)
    if a.json:
        _echo(json.dumps(info))
        return 0
    _echo(f"{_pad(_('url'), 10)} {info['url']}")
    if not info["tls"]:
        _echo(_("plain HTTP on loopback; HTTPS comes on with hub.ip beyond loopback or "
                "hub.tls_cert"))
        return 0
    if info["operator"]:
        _echo(f"{_pad(_('cert'), 10)} {info['cert']}  " + _("(yours: hub.tls_cert)"))
    else:
        _echo(f"{_pad('CA', 10)} {info['ca']}")
        _echo(f"{_pad('', 10)} " + _("give this file to learners' browsers (import it as a "
                                     "trusted authority); SHA-256 {fp}").format(
                                         fp=info.get("ca_sha256", "?")))
        _echo(f"{_pad(_('cert'), 10)} {info['cert']}")
    _echo(f"{_pad(_('names'), 10)} {', '.join(info.get('names') or [])}")
    _echo(f"{_pad(_('expires'), 10)} {info.get('not_after', '?')}")
    return 0


def cmd_grade(s: Settings, a: argparse.Namespace) -> int:
    from images.table import grading_image

    image = a.image or grading_image(s, _spec_image(Path(a.course_dir), s) or "learner")
    return _grade(s, Path(a.course_dir), a.assignment, image, force=a.force,
                  students=a.student or None, workers=a.workers, memory=a.memory,
                  cell_timeout=a.cell_timeout, notebook_timeout=a.notebook_timeout, gpus=a.gpus)


def _grade(s: Settings, course_dir: Path, assignment: str, image: str, *, force: bool,
           students: list[str] | None = None, workers: int | None = None,
           **overrides: Any) -> int:
    """`onelab grade`: settings.grading plus what was given."""
    from dataclasses import replace

    from graders.grade import Options, grade
    from hub.gpu.borrow import borrowed
    from onelab import dockerdoor

    dockerdoor.require_image(image, "grading image")
    opts = Options.from_settings(s.grading, image, **overrides)
    # GPUs from the learners' claims (with an inventory), given back after
    with borrowed(s, "grade", opts.limits.gpus) as gpus:
        opts = replace(opts, limits=opts.limits.model_copy(update={"gpus": gpus}))
        outcomes = grade(course_dir, assignment, opts, students=students,
                         workers=workers or s.grading.workers, force=force, echo=_echo,
                         progress=sys.stderr.isatty())
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _spec_image(course_dir: Path, s: Settings) -> str | None:
    """The image a course's spec names, for an nbgrader course directory whose course_id is a
    course in courses/ (None when there is no such course or it uses the learner image)."""
    from graders.grade import nbgrader_config
    from onelab.course import courses_dir, load_course

    course_id = nbgrader_config(course_dir).CourseDirectory.get("course_id")
    spec = (s.courses_dir or courses_dir()) / str(course_id) / "course.yml"
    if not course_id or not spec.exists():
        return None
    image = load_course(spec).image
    return None if image == "learner" else image


def cmd_bench_grade(s: Settings, a: argparse.Namespace) -> int:
    from graders.bench import bench_grade
    from images.table import learner_image
    from onelab import dockerdoor

    image = a.image or learner_image(s)
    dockerdoor.require_image(image, "grading image")
    bench_grade(image, students=a.students, workers=a.workers, flavour=a.flavour,
                course=a.course, keep=Path(a.keep).resolve() if a.keep else None, echo=_echo)
    return 0


def cmd_regress(s: Settings, a: argparse.Namespace) -> int:
    from onelab.course import load_courses
    from regress import report
    from regress.runner import regress

    courses = load_courses(Path(a.courses_dir) if a.courses_dir else None, a.course or None)
    out = Path(a.out)
    result = regress(courses, s, device=a.device, full=a.full, qa=not a.no_qa,
                     strict_tests=a.strict_tests, workers=a.workers, out_dir=out, echo=_echo)
    md = report.write(result, out)
    warnings = [w for e in result.entries for w in e.warnings]
    for w in warnings:
        _echo(_("WEAK TEST: {warning}").format(warning=w))
    problems = [p for e in result.entries for p in e.problems]
    for p in problems:
        _echo(_("FAILED: {problem}").format(problem=p))
    if warnings or (a.strict_tests and any(e.qa and e.qa.fooled for e in result.entries)):
        from regress.probe import HINT

        _echo(_("hint: {hint}").format(hint=HINT))
    _echo((_("regression passed: {n} assignment(s) in {seconds:.0f} s; report {report}")
           if result.passed else
           _("regression FAILED: {n} assignment(s) in {seconds:.0f} s; report {report}"))
          .format(n=len(result.entries), seconds=result.seconds, report=md))
    return 0 if result.passed else 1


def cmd_course_sync(s: Settings, a: argparse.Namespace) -> int:
    from hub.courses import course_specs
    from hub.coursework import course_root, sync_course

    for c in course_specs(s):
        sync_course(s, c)
        _echo(f"{c.id:<20} {course_root(s, c.id)}  "
              + _("({learners} learner(s), {assignments} assignment(s))").format(
                  learners=len(c.all_learners()), assignments=len(c.assignments)))
    _echo(_("groups and roles follow the specs when the hub (re)starts: `onelab down "
            "--keep-servers && onelab up --detach` keeps learners' servers running"))
    return 0


def cmd_assignment(s: Settings, a: argparse.Namespace) -> int:
    from hub import coursework

    if a.sub == "release":
        path = coursework.release(s, a.course, a.assignment)
        _echo(_("released {course}/{assignment}: learners can fetch it ({path})").format(
            course=a.course, assignment=a.assignment, path=path))
    elif a.sub == "collect":
        got = coursework.collect(s, a.course, a.assignment)
        _echo(_("collected {n} submission(s) of {course}/{assignment}: {names}").format(
            n=len(got), course=a.course, assignment=a.assignment,
            names=", ".join(got) or _("none yet")))
    elif a.sub == "grade":
        # in the course's grading service (its sandbox image and limits are the hub's): the
        # course directory is staff-writable, so it is never graded from the host
        rows = coursework.grade(s, a.course, a.assignment, force=a.force)
        for r in rows:
            _echo(f"{r['student']:<20} {r['status']:<8} {r.get('error', '')[:200]}")
        failed = sum(r["status"] == "failed" for r in rows)
        _echo(_("{graded} graded, {failed} failed, {skipped} skipped").format(
            graded=sum(r["status"] == "graded" for r in rows), failed=failed,
            skipped=sum(r["status"] == "skipped" for r in rows)))
        return 1 if failed else 0
    elif a.sub == "feedback":
        sent = coursework.feedback(s, a.course, a.assignment)
        _echo(_("feedback of {course}/{assignment} ready for {n} learner(s): {names}").format(
            course=a.course, assignment=a.assignment, n=len(sent),
            names=", ".join(sent) or _("none")))
    return 0


def cmd_grades_export(s: Settings, a: argparse.Namespace) -> int:
    from hub.coursework import export_csv, grade_rows

    text = export_csv(grade_rows(s, a.course))
    if a.out:
        Path(a.out).write_text(text, encoding="utf-8")
        _echo(_("wrote {path}").format(path=a.out))
    else:
        sys.stdout.write(text)
    return 0


def cmd_course_list(s: Settings, a: argparse.Namespace) -> int:
    from onelab.course import load_courses

    for c in load_courses(Path(a.courses_dir) if a.courses_dir else None):
        _echo(f"{c.id:<20} {c.title.ko} · {c.title.en}")
        for x in c.assignments:
            due = x.due.isoformat() if x.due else _("no due date")
            _echo(f"  {x.id:<28} {due:<26} {x.title.ko}")
    return 0


def _no_gpus() -> None:
    _echo(_("No GPUs: the gpu.inventory setting declares none and nvidia-smi found none. "
            "Declare them in onelab.yaml under gpu.inventory (docs/gpu.md)."))


def _user_list(value: str | None) -> list[str] | None:
    return [u.strip() for u in value.split(",") if u.strip()] if value else None


def cmd_class_warm(s: Settings, a: argparse.Namespace) -> int:
    import time

    from hub import warmup

    until = time.time() + a.minutes * 60 if a.minutes else None
    out = warmup.warm(s, a.course, _user_list(a.users), until=until, echo=_echo)
    _echo(_("{n} server(s) ready in {seconds:.0f} s, kept warm until {until}").format(
        n=len(out.ready), seconds=out.seconds,
        until=time.strftime("%Y-%m-%d %H:%M", time.localtime(
            until or time.time() + s.classes.warm_for))))
    for name, why in sorted(out.failed.items()):
        _echo(f"  {name}: {why}")
    return 1 if out.failed else 0


def cmd_class_cool(s: Settings, a: argparse.Namespace) -> int:
    from hub import warmup

    warmup.cool(s, a.course, _user_list(a.users), echo=_echo)
    return 0


def cmd_swarm_init(s: Settings, a: argparse.Namespace) -> int:
    from onelab import dockerdoor

    node = dockerdoor.swarm_init(a.advertise_addr)
    _echo(_("this Docker Engine is a swarm manager (node {node}, {addr}); set spawner.backend: "
            "swarm and run `onelab up`").format(node=node[:12], addr=a.advertise_addr))
    if a.advertise_addr.startswith("127."):
        _echo(_("a loopback address: no other machine can join; give --advertise-addr an "
                "address workers reach for more nodes"))
    return 0


def cmd_swarm_join_command(s: Settings, a: argparse.Namespace) -> int:
    from onelab import dockerdoor

    _echo(dockerdoor.swarm_join_command())
    return 0


def cmd_nodes(s: Settings, a: argparse.Namespace) -> int:
    from onelab import dockerdoor

    rows = dockerdoor.swarm_nodes() if dockerdoor.swarm_info().get("ControlAvailable") else []
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        _echo(_("not a swarm manager: run `onelab swarm init` (docs/swarm.md)"))
        return 1
    _echo(f"{'NODE':<14}{'HOSTNAME':<18}{'ROLE':<9}{'STATE':<8}{'CPUS':>6}{'MEMORY':>10}"
          f"{'LEARNERS':>10}  GPUS")
    for r in rows:
        gpus = ", ".join(str(g) for g in r["generic"]) or "-"
        _echo(f"{r['id'][:12]:<14}{r['hostname'][:17]:<18}{r['role']:<9}{r['state']:<8}"
              f"{r['cpus']:>6.0f}{r['memory'] / 2**30:>8.1f}Gi{r['learners']:>10}  {gpus}")
    return 0


def cmd_k8s_values(s: Settings, a: argparse.Namespace) -> int:
    import yaml

    from hub import k8s_values
    from hub.courses import course_specs

    v = k8s_values.values(s, course_specs(s))
    problems = k8s_values.check(v)
    if problems:
        _echo(_("The Kubernetes objects these values make are not valid (Kubernetes {version}); "
                "nothing written:").format(version=k8s_values.KUBERNETES_VERSION), err=True)
        for p in problems:
            _echo(f"  {p}", err=True)
        return 1
    text = ("# Zero to JupyterHub values from OneLab's settings and courses (`onelab k8s "
            "values`;\n# docs/kubernetes.md). Secrets are not written: set them as that page "
            "says.\n" + yaml.safe_dump(v, allow_unicode=True, sort_keys=False, width=100))
    if a.out:
        Path(a.out).write_text(text, encoding="utf-8")
        _echo(_("wrote {path}: checked against the Kubernetes {version} schemas").format(
            path=a.out, version=k8s_values.KUBERNETES_VERSION), err=True)
    else:
        sys.stdout.write(text)
    if k8s_values.SECRET in text:
        _echo(_("Set what the values mark {secret!r} before `helm upgrade` (docs/kubernetes.md)."
                ).format(secret=k8s_values.SECRET), err=True)
    return 0


def cmd_gpu_list(s: Settings, a: argparse.Namespace) -> int:
    from datetime import UTC

    from hub.gpu import report

    inventory, rows = report.devices(s)
    if not inventory:
        _no_gpus()
        return 0
    source = (_("the gpu.inventory setting") if inventory.source == "settings"
              else inventory.source)
    _echo(_("{n} device(s), from {source}").format(n=len(rows), source=source))
    for device, holders in rows:
        memory = f"{device.memory_mib} MiB" if device.memory_mib else "?"
        _echo(f"{device.index:>3}  {device.uuid:<44} {device.model or '-'} ({memory})")
        if not holders:
            _echo("       " + _("free"))
        for c in holders:
            since = c.claimed_at.replace(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M")
            who = c.username + (f"/{c.server_name}" if c.server_name else "")
            _echo(f"       {c.slot:>2}  " + _("{user} ({course}, {policy}, since {time})")
                  .format(user=who, course=c.course or "-", policy=c.policy, time=since))
    return 0


def cmd_gpu_usage(s: Settings, a: argparse.Namespace) -> int:
    from hub.gpu import inventory as gpu_inventory
    from hub.gpu import report

    if not gpu_inventory.load(s.gpu):
        _no_gpus()
        return 0
    rows = report.usage(s, week=a.week)
    if not rows:
        _echo(_("no GPU time recorded this week") if a.week else _("no GPU time recorded"))
        return 0
    head = [_("learner"), _("course"), _("hours")] + ([_("left")] if a.week else [])
    _echo(f"{_pad(head[0], 24)} {_pad(head[1], 20)} {_pad(head[2], 8)} "
          + (head[3] if a.week else "").rstrip())
    for r in rows:
        left = ("" if not a.week else _("unlimited") if r.left is None
                else f"{r.left:.2f} / {r.limit:g}")
        _echo(f"{r.user:<24} {r.course or '-':<20} {r.hours:<8.2f} {left}".rstrip())
    return 0


def cmd_bench_spawn(s: Settings, a: argparse.Namespace) -> int:
    from hub.bench import bench_spawn

    bench_spawn(s, users=a.users, echo=_echo, keep=a.keep)
    return 0


def cmd_bench_class(s: Settings, a: argparse.Namespace) -> int:
    import json

    from hub.bench import bench_class

    result = bench_class(s, users=a.users, warm=a.warm, echo=_echo, keep=a.keep)
    if a.json:
        print(json.dumps(result, indent=1, sort_keys=True))
    return 1 if result["errors"] else 0


def cmd_bench_load(s: Settings, a: argparse.Namespace) -> int:
    from hub.loadbench import bench_load, render

    result = bench_load(s, users=a.users, api_calls=a.api_calls, spawn=a.spawn, keep=a.keep,
                        prefix=a.prefix)
    if a.json:
        _echo(json.dumps(result, ensure_ascii=False))
    else:
        for line in render(result, _):
            _echo(line)
    return 0 if result["passed"] else 1


def _checked(field: str) -> Callable[[str], str]:
    """An argparse type that checks a value as settings.grading.<field> would."""
    from pydantic import ValidationError

    from onelab.settings import GradingSettings

    def check(value: str) -> str:
        try:
            return str(getattr(GradingSettings(**{field: value}), field))
        except ValidationError as e:
            raise argparse.ArgumentTypeError(e.errors()[0]["msg"].removeprefix("Value error, "))
    check.__name__ = field
    return check


def _parser_class() -> type[argparse.ArgumentParser]:
    """argparse with its own words (usage, section titles, -h, "error") in the command's
    language too; every subcommand's parser is of the same class."""

    class Formatter(argparse.HelpFormatter):
        def add_usage(self, usage: str | None, actions: Any, groups: Any,
                      prefix: str | None = None) -> None:
            super().add_usage(usage, actions, groups, _("usage: ") if prefix is None else prefix)

    class Parser(argparse.ArgumentParser):
        def __init__(self, **kw: Any) -> None:
            kw.setdefault("formatter_class", Formatter)
            super().__init__(add_help=False, **kw)
            self._positionals.title = _("positional arguments")
            self._optionals.title = _("options")
            self.add_argument("-h", "--help", action="help", default=argparse.SUPPRESS,
                              help=_("show this help message and exit"))

        def error(self, message: str) -> Any:
            self.print_usage(sys.stderr)
            self.exit(2, _("{prog}: error: {message}").format(prog=self.prog, message=message)
                      + "\n")

    return Parser


def build_parser() -> argparse.ArgumentParser:
    p = _parser_class()(prog="onelab", description=_("OneLab: a hands-on AI classroom."))
    sub = p.add_subparsers(dest="command", required=True)

    def add(parent: Any, name: str, fn: Callable[..., int], help: str) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    def group(name: str, help: str) -> Any:
        return sub.add_parser(name, help=help, description=help).add_subparsers(
            dest="sub", required=True)

    up = add(sub, "up", cmd_up, _("Start the platform (proxy + hub) and wait until it answers."))
    up.add_argument("--detach", "-d", action="store_true", help=_("return once it is up"))
    down = add(sub, "down", cmd_down, _("Stop the hub, the proxy and learner containers."))
    down.add_argument("--keep-servers", action="store_true",
                      help=_("leave learner containers running"))
    st = add(sub, "status", cmd_status,
             _("Show what runs (exit 1 when the hub does not answer)."))
    st.add_argument("--json", action="store_true")
    add(sub, "token", cmd_token, _("Print an admin-scoped API token for automation."))

    users = group("users", _("Local accounts."))
    ua = add(users, "add", cmd_users_add, _("Add a local account (prints a generated password)."))
    ua.add_argument("name")
    ua.add_argument("--password")
    ua.add_argument("--admin", action="store_true")
    ua.add_argument("--full-name")
    ui = add(users, "import", cmd_users_import,
             _("Add a class list from CSV (username[,password,full_name,admin])."))
    ui.add_argument("csv")
    ui.add_argument("--replace", action="store_true", help=_("reset accounts that exist already"))
    ui.add_argument("--out", help=_("write generated passwords to this CSV file"))
    add(users, "list", cmd_users_list, _("List local accounts."))
    up_ = add(users, "passwd", cmd_users_passwd, _("Set (or generate) a new password."))
    up_.add_argument("name")
    up_.add_argument("--password")
    ur = add(users, "remove", cmd_users_remove,
             _("Remove a user for good (login, server, tokens, hub user); keep their home aside."))
    ur.description = _(
        "Remove a user for good: their login, server, API tokens, sessions and hub user. Their "
        "home volume is kept under a dated name (VOLUME.removed-<UTC time>), so a new account "
        "with the same name starts empty; --delete-home deletes it instead. Needs the platform "
        "running (only the hub can revoke tokens and sessions); with the hub down it refuses "
        "and changes nothing.")
    ur.add_argument("name")
    ur.add_argument("--delete-home", action="store_true",
                    help=_("delete the home volume instead of keeping it (no confirmation asked)"))
    rh = add(users, "restore-home", cmd_users_restore_home,
             _("Give a user back a home kept by `users remove` (their server must be stopped; a "
               "home they have now is kept aside first)."))
    rh.add_argument("name")
    rh.add_argument("volume",
                    help=_("the kept volume, as `users remove` or `users add` named it"))
    add(users, "locks", cmd_users_locks,
        _("List login locks and failed logins being counted (accounts and client addresses)."))
    ul = add(users, "unlock", cmd_users_unlock,
             _("Lift the login lock of an account (or of a client address) and forget its "
               "failed logins."))
    ul.add_argument("name", nargs="?")
    ul.add_argument("--address", metavar="IP", help=_("a client address instead of an account"))

    images = group("images", _("Learner images."))
    ib = add(images, "build", cmd_images_build,
             _("Build the base and learner images if missing."))
    ib.add_argument("--gpu", action="store_true",
                    help=_("the CUDA variant (several GB of wheels)"))
    add(images, "list", cmd_images_list, _("Show the images' tags and versions."))

    gr = add(sub, "grade", cmd_grade,
             _("Autograde an nbgrader assignment, each submission in its own sandbox, in "
               "parallel."))
    gr.add_argument("assignment")
    gr.add_argument("--course-dir", required=True, help=_("an nbgrader course directory"))
    gr.add_argument("--student", action="append", help=_("only this student (repeatable)"))
    gr.add_argument("--workers", type=int, help=_("parallel submissions (default: cores)"))
    gr.add_argument("--image", help=_("course image (default: the learner image)"))
    gr.add_argument("--force", action="store_true", help=_("regrade submissions graded already"))
    gr.add_argument("--memory", type=_checked("memory"),
                    help=_("memory per submission (default: grading.memory, 1G)"))
    gr.add_argument("--cell-timeout", type=int,
                    help=_("seconds per cell (default: grading.cell_timeout)"))
    gr.add_argument("--notebook-timeout", type=int,
                    help=_("seconds per notebook (default: grading.notebook_timeout)"))
    gr.add_argument("--gpus", type=_checked("gpus"),
                    help=_("GPUs per submission: none, all, N or device=0,1 (default: "
                           "grading.gpus)"))

    rg = add(sub, "regress", cmd_regress,
             _("Run every course notebook with papermill in the course image; check metrics and "
               "grading (solution full marks, released version zero); report tests an "
               "always-equal answer passes."))
    rg.add_argument("course", nargs="*", help=_("course ids (default: all in courses/)"))
    rg.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    rg.add_argument("--full", action="store_true",
                    help=_("the full parameters (a classroom run)"))
    rg.add_argument("--out", default="regress-report",
                    help=_("report folder (default: ./regress-report)"))
    rg.add_argument("--workers", type=int, help=_("notebooks at once (default: cores)"))
    rg.add_argument("--no-qa", action="store_true", help=_("skip the grading checks"))
    rg.add_argument("--strict-tests", action="store_true",
                    help=_("fail when an always-equal answer passes a test (default: report "
                           "it)"))
    rg.add_argument("--courses-dir",
                    help=_("where the courses are (default: the repository's courses/)"))

    swarm = group("swarm", _("Learners over several Docker hosts with Docker Swarm "
                             "(docs/swarm.md)."))
    si = add(swarm, "init", cmd_swarm_init, _("Make this Docker Engine the swarm manager."))
    si.add_argument("--advertise-addr", default="127.0.0.1",
                    help=_("the address workers reach this manager on (default: 127.0.0.1, "
                           "one node)"))
    add(swarm, "join-command", cmd_swarm_join_command,
        _("Print the command a worker runs to join."))
    nd = add(sub, "nodes", cmd_nodes,
             _("The swarm's nodes: role, state, CPUs, memory, learners and GPUs on each."))
    nd.add_argument("--json", action="store_true")

    k8s = group("k8s", _("Run the same courses on Kubernetes (Zero to JupyterHub)."))
    kv = add(k8s, "values", cmd_k8s_values,
             _("Write Zero to JupyterHub Helm values from these settings and courses, checked "
               "against the Kubernetes schemas (docs/kubernetes.md)."))
    kv.add_argument("--out", help=_("file to write (default: standard output)"))

    course = group("course", _("Courses as code."))
    cl = add(course, "list", cmd_course_list, _("List the courses and their assignments."))
    cl.add_argument("--courses-dir", help=_("default: the repository's courses/"))
    add(course, "sync", cmd_course_sync,
        _("Make each course's nbgrader directory on the hub match its spec."))

    asg = group("assignment", _("Release, collect, grade, return feedback."))
    for verb, text in (("release", _("Generate the student version and release it to "
                                     "learners.")),
                       ("collect", _("Take each learner's latest submission for grading.")),
                       ("grade", _("Autograde the collected submissions in the sandbox.")),
                       ("feedback", _("Generate feedback and hand each learner their own."))):
        ap = add(asg, verb, cmd_assignment, text)
        ap.add_argument("course")
        ap.add_argument("assignment")
        if verb == "grade":
            ap.add_argument("--force", action="store_true", help=_("regrade graded submissions"))

    grades = group("grades", _("Grades."))
    ge = add(grades, "export", cmd_grades_export,
             _("One row per learner and assignment, late penalties applied."))
    ge.add_argument("course")
    ge.add_argument("--format", choices=["csv"], default="csv")
    ge.add_argument("--out", help=_("file to write (default: standard output)"))

    bk = add(sub, "backup", cmd_backup,
             _("Write the whole platform into one archive while it runs: hub database and "
               "accounts, gradebooks, the exchange, courses, settings, secrets, learners' homes "
               "(docs/backup.md)."))
    bk.add_argument("dest", nargs="?",
                    help=_("the archive to write (default: <state_dir>-backups/onelab-<UTC>.tar)"))
    rs = add(sub, "restore", cmd_restore,
             _("Bring a backup back onto a fresh, stopped platform; checks every checksum "
               "first and never overwrites (docs/backup.md)."))
    rs.add_argument("src", help=_("the archive `onelab backup` wrote"))
    rs.add_argument("--force", action="store_true",
                    help=_("move an existing state directory, database or volumes aside "
                           "(dated names) instead of refusing; nothing is deleted"))
    rs.add_argument("--check", action="store_true",
                    help=_("only check the archive's checksums; change nothing"))

    se = add(sub, "settings", cmd_settings,
             _("Print the settings in force, or their reference."))
    se.add_argument("--reference", action="store_true",
                    help=_("Markdown reference of all settings"))

    cls = group("class", _("A class's servers before the bell (docs/classes.md)."))
    cw = add(cls, "warm", cmd_class_warm,
             _("Start a course's learners' servers now and keep them from the idle culler."))
    cw.add_argument("course")
    cw.add_argument("--users", metavar="A,B", help=_("only these learners of the course"))
    cw.add_argument("--minutes", type=int,
                    help=_("keep them warm this long (default: classes.warm_for)"))
    cc = add(cls, "cool", cmd_class_cool,
             _("Stop a course's learners' servers; their homes are kept."))
    cc.add_argument("course")
    cc.add_argument("--users", metavar="A,B", help=_("only these learners of the course"))

    gpu = group("gpu", _("GPUs for learners: the devices, who holds them, hours used "
                         "(docs/gpu.md)."))
    add(gpu, "list", cmd_gpu_list,
        _("List the GPUs and MIG instances and who holds each (the hub's claims)."))
    gu = add(gpu, "usage", cmd_gpu_usage,
             _("GPU-hours per learner and course, counted from their claims."))
    gu.add_argument("--week", action="store_true",
                    help=_("only this week (from Monday 00:00), with the hours left of the "
                           "weekly limit"))

    tl = group("tls", _("HTTPS on the public port."))
    ts = add(tl, "show", cmd_tls_show,
             _("The CA to hand to learners' browsers and the certificate's names and expiry "
               "(made first if missing)."))
    ts.add_argument("--json", action="store_true")

    bench = group("bench", _("Benchmarks."))
    bs = add(bench, "spawn", cmd_bench_spawn,
             _("Spawn N learners at once: time to ready, to first `import torch`, memory each."))
    bs.add_argument("--users", type=int, default=5)
    bs.add_argument("--keep", action="store_true", help=_("leave the bench learners running"))
    bc = add(bench, "class", cmd_bench_class,
             _("N learners log in through the login form at once: time to a ready server and "
               "to a first `import torch` cell, failures, memory each."))
    bc.add_argument("--users", type=int, default=10)
    bc.add_argument("--warm", action="store_true",
                    help=_("warm their servers first (as `onelab class warm` does)"))
    bc.add_argument("--keep", action="store_true", help=_("leave the bench learners running"))
    bc.add_argument("--json", action="store_true", help=_("also print the figures as JSON"))
    bl = add(bench, "load", cmd_bench_load,
             _("Many learners at once against the running hub: logins, API calls, server "
               "starts; every response counted, any 5xx fails."))
    bl.add_argument("--users", type=int, default=30, help=_("learners who log in at once"))
    bl.add_argument("--api-calls", type=int, default=300,
                    help=_("REST API calls, shared among the learners, made at once"))
    bl.add_argument("--spawn", type=int, default=10,
                    help=_("learners who start their server at once, while the API calls run"))
    bl.add_argument("--json", action="store_true", help=_("the figures as JSON"))
    bl.add_argument("--prefix", default="load-",
                    help=_("the bench learners' names: PREFIX01, PREFIX02, ..."))
    bl.add_argument("--keep", action="store_true",
                    help=_("leave the bench learners, their accounts and servers"))
    bg = add(bench, "grade", cmd_bench_grade,
             _("Grade one class with stock `nbgrader autograde` and with `onelab grade`; "
               "compare."))
    bg.add_argument("--course", choices=["demo", "nbgrader-docs"], default="demo",
                    help=_("demo: OneLab's generated class; nbgrader-docs: ps1 of nbgrader's "
                           "documentation, the shipped example submissions in turn"))
    bg.add_argument("--students", type=int, default=20)
    bg.add_argument("--workers", type=int, help=_("default: cores"))
    bg.add_argument("--flavour", choices=["python", "torch"], default="python",
                    help=_("demo course only: torch adds a PyTorch training exercise (needs "
                           "torch in .venv)"))
    bg.add_argument("--keep", metavar="DIR",
                    help=_("leave both graded courses in DIR (ours/, stock/), with OneLab's "
                           "per-submission timelines"))
    bg.add_argument("--image", help=_("course image (default: the learner image)"))
    return p


def _audited(a: argparse.Namespace) -> tuple[str, str, dict[str, Any]] | None:
    """(action, target, details) of a command the audit log records (onelab/audit.py): the
    ones that change who may log in, or what learners get. Never a password."""
    sub = getattr(a, "sub", None)
    if a.command == "users" and sub in ("add", "passwd", "remove", "restore-home"):
        details = {"admin": a.admin} if sub == "add" else {}
        return f"users.{sub}", a.name.lower(), details | (
            {"volume": a.volume} if sub == "restore-home" else {})
    if a.command == "users" and sub == "import":
        return "users.import", a.csv, {"replace": a.replace}
    if a.command == "users" and sub == "unlock":
        return "users.unlock", a.name or f"address {a.address}", {}
    if a.command == "assignment":
        return f"assignment.{sub}", f"{a.course}/{a.assignment}", {}
    if a.command in ("backup", "restore") and not getattr(a, "check", False):
        return a.command, (a.dest or "default") if a.command == "backup" else a.src, {}
    return None


def _run_audited(s: Settings, a: argparse.Namespace) -> int:
    """The command, and its line in the audit log when it is an admin action."""
    from onelab import audit

    what = _audited(a)
    if what is None:
        return a.fn(s, a)
    action, target, details = what
    rc = 2
    try:
        rc = a.fn(s, a)
        return rc
    except OneLabError as e:
        details["error"] = str(e)
        raise
    finally:
        try:
            audit.record(s.state_dir, audit.os_actor(), action, target,
                         "ok" if rc == 0 else "failed", via="onelab", exit=rc, **details)
        except OSError as e:
            print(_("onelab: could not write the audit log: {why}").format(why=e),
                  file=sys.stderr)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The command; its language from `environ` (default: this process's environment)."""
    global _lang
    _lang = i18n.cli_language(os.environ if environ is None else environ)
    args = build_parser().parse_args(argv)
    try:
        settings = load()
        return _run_audited(settings, args)
    except OneLabError as e:
        print(f"onelab: {e.translated(_)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

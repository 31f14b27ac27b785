"""`onelab`: the one command for operators and instructors. A thin layer over the packages.

Every OneLabError becomes ``onelab: <one line>`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onelab.errors import OneLabError
from onelab.settings import Settings, load, reference


def _echo(text: str) -> None:
    print(text, flush=True)


def cmd_up(s: Settings, a: argparse.Namespace) -> int:
    from hub import runtime

    runtime.start(s, _echo)
    _echo(f"OneLab is up at {s.public_url}")
    if a.detach:
        return 0
    _echo("(following the hub's log; Ctrl-C stops the platform)")

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill`/systemd stop the platform as Ctrl-C does

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        runtime.follow(s, _echo)
    except KeyboardInterrupt:
        _echo("stopping...")
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
        _echo(f"url      {st['url']}  ({'healthy' if st['healthy'] else 'not answering'})")
        _echo(f"hub      {'pid ' + str(st['hub']) if st['hub'] else 'stopped'}")
        _echo(f"proxy    {'pid ' + str(st['proxy']) if st['proxy'] else 'stopped'}")
        _echo(f"image    {st['image']}")
        fw = st["firewall"]
        _echo("firewall " + ("off (spawner.host_firewall: false)" if not fw["enabled"] else
                             f"{len(fw['rules'])} rule(s)" if fw["rules"] else
                             "not installed (run `onelab up`)")
              + "".join(f"\n  {r}" for r in fw["rules"]))
        learners = st["learners"]
        _echo(f"learners {len(learners)} container(s)" + "".join(
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
    _echo(f"added {acct.name}{' (admin)' if acct.admin else ''}")
    if not a.password:
        _echo(f"password: {password}")
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
        raise OneLabError(f"cannot read class list {a.csv}: {e.strerror}") from None
    notes: list[str] = []
    generated = _accounts(s).import_csv(text, replace=a.replace,
                                        check_new=lambda n: notes.extend(fresh_home_check(s, n)))
    lines = ["username,password", *(f"{n},{p}" for n, p in generated)]
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
        _echo(f"imported; {len(generated)} generated password(s) written to {a.out}")
    else:
        _echo("imported")
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
    _echo(f"password of {a.name} changed" + ("" if a.password else f": {password}"))
    return 0


def cmd_users_remove(s: Settings, a: argparse.Namespace) -> int:
    from hub.accounts import remove_user

    r = remove_user(s, a.name.lower(), delete_home=a.delete_home, echo=_echo)
    _echo(f"removed {r.name}" + (f"; home kept as {r.kept_as}" if r.kept_as else
                                  "; home deleted" if r.home_deleted else ""))
    return 0


def cmd_users_restore_home(s: Settings, a: argparse.Namespace) -> int:
    from hub.accounts import restore_home

    restore_home(s, a.name.lower(), a.volume, echo=_echo)
    return 0


def cmd_images_build(s: Settings, a: argparse.Namespace) -> int:
    from images.build import build

    tag = build(s, gpu=a.gpu, echo=_echo)
    _echo(f"learner image: {tag}")
    return 0


def cmd_images_list(s: Settings, a: argparse.Namespace) -> int:
    from images import table
    from images.build import image_versions

    for name in table.TABLE:
        tag = table.tag(name, s)
        v = image_versions(tag)
        state = "built" if v else "not built"
        extra = ", ".join(f"{k.removeprefix('version.')}={val}" for k, val in sorted(v.items())
                          if k.startswith("version."))
        _echo(f"{tag:<36} {state}{'  ' + extra if extra else ''}")
    return 0


def cmd_settings(s: Settings, a: argparse.Namespace) -> int:
    if a.reference:
        _echo(reference())
    else:
        _echo(json.dumps(s.model_dump(mode="json"), indent=2, ensure_ascii=False))
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
    from graders.grade import Options, grade
    from onelab import dockerdoor

    dockerdoor.require_image(image, "grading image")
    opts = Options.from_settings(s.grading, image, **overrides)
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
        _echo(f"WEAK TEST: {w}")
    problems = [p for e in result.entries for p in e.problems]
    for p in problems:
        _echo(f"FAILED: {p}")
    if warnings or (a.strict_tests and any(e.qa and e.qa.fooled for e in result.entries)):
        from regress.probe import HINT

        _echo(f"hint: {HINT}")
    _echo(f"regression {'passed' if result.passed else 'FAILED'}: {len(result.entries)} "
          f"assignment(s) in {result.seconds:.0f} s; report {md}")
    return 0 if result.passed else 1


def cmd_course_sync(s: Settings, a: argparse.Namespace) -> int:
    from hub.courses import course_specs
    from hub.coursework import course_root, sync_course

    for c in course_specs(s):
        sync_course(s, c)
        _echo(f"{c.id:<20} {course_root(s, c.id)}  ({len(c.all_learners())} learner(s), "
              f"{len(c.assignments)} assignment(s))")
    _echo("groups and roles follow the specs when the hub (re)starts: `onelab down "
          "--keep-servers && onelab up --detach` keeps learners' servers running")
    return 0


def cmd_assignment(s: Settings, a: argparse.Namespace) -> int:
    from hub import coursework

    if a.sub == "release":
        path = coursework.release(s, a.course, a.assignment)
        _echo(f"released {a.course}/{a.assignment}: learners can fetch it ({path})")
    elif a.sub == "collect":
        got = coursework.collect(s, a.course, a.assignment)
        _echo(f"collected {len(got)} submission(s) of {a.course}/{a.assignment}: "
              f"{', '.join(got) or 'none yet'}")
    elif a.sub == "grade":
        # in the course's grading service (its sandbox image and limits are the hub's): the
        # course directory is staff-writable, so it is never graded from the host
        rows = coursework.grade(s, a.course, a.assignment, force=a.force)
        for r in rows:
            _echo(f"{r['student']:<20} {r['status']:<8} {r.get('error', '')[:200]}")
        failed = sum(r["status"] == "failed" for r in rows)
        _echo(f"{sum(r['status'] == 'graded' for r in rows)} graded, {failed} failed, "
              f"{sum(r['status'] == 'skipped' for r in rows)} skipped")
        return 1 if failed else 0
    elif a.sub == "feedback":
        sent = coursework.feedback(s, a.course, a.assignment)
        _echo(f"feedback of {a.course}/{a.assignment} ready for {len(sent)} learner(s): "
              f"{', '.join(sent) or 'none'}")
    return 0


def cmd_grades_export(s: Settings, a: argparse.Namespace) -> int:
    from hub.coursework import export_csv, grade_rows

    text = export_csv(grade_rows(s, a.course))
    if a.out:
        Path(a.out).write_text(text, encoding="utf-8")
        _echo(f"wrote {a.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_course_list(s: Settings, a: argparse.Namespace) -> int:
    from onelab.course import load_courses

    for c in load_courses(Path(a.courses_dir) if a.courses_dir else None):
        _echo(f"{c.id:<20} {c.title.ko} · {c.title.en}")
        for x in c.assignments:
            due = x.due.isoformat() if x.due else "no due date"
            _echo(f"  {x.id:<28} {due:<26} {x.title.ko}")
    return 0


def cmd_bench_spawn(s: Settings, a: argparse.Namespace) -> int:
    from hub.bench import bench_spawn

    bench_spawn(s, users=a.users, echo=_echo, keep=a.keep)
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onelab", description="OneLab: a hands-on AI classroom.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(parent: Any, name: str, fn: Callable[..., int], help: str) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    up = add(sub, "up", cmd_up, "Start the platform (proxy + hub) and wait until it answers.")
    up.add_argument("--detach", "-d", action="store_true", help="return once it is up")
    down = add(sub, "down", cmd_down, "Stop the hub, the proxy and learner containers.")
    down.add_argument("--keep-servers", action="store_true", help="leave learner containers running")
    st = add(sub, "status", cmd_status, "Show what runs (exit 1 when the hub does not answer).")
    st.add_argument("--json", action="store_true")
    add(sub, "token", cmd_token, "Print an admin-scoped API token for automation.")

    users = sub.add_parser("users", help="Local accounts.").add_subparsers(dest="sub", required=True)
    ua = add(users, "add", cmd_users_add, "Add a local account (prints a generated password).")
    ua.add_argument("name")
    ua.add_argument("--password")
    ua.add_argument("--admin", action="store_true")
    ua.add_argument("--full-name")
    ui = add(users, "import", cmd_users_import,
             "Add a class list from CSV (username[,password,full_name,admin]).")
    ui.add_argument("csv")
    ui.add_argument("--replace", action="store_true", help="reset accounts that exist already")
    ui.add_argument("--out", help="write generated passwords to this CSV file")
    add(users, "list", cmd_users_list, "List local accounts.")
    up_ = add(users, "passwd", cmd_users_passwd, "Set (or generate) a new password.")
    up_.add_argument("name")
    up_.add_argument("--password")
    ur = add(users, "remove", cmd_users_remove,
             "Remove a user for good (login, server, tokens, hub user); keep their home aside.")
    ur.description = (
        "Remove a user for good: their login, server, API tokens, sessions and hub user. Their "
        "home volume is kept under a dated name (VOLUME.removed-<UTC time>), so a new account "
        "with the same name starts empty; --delete-home deletes it instead. Needs the platform "
        "running (only the hub can revoke tokens and sessions); with the hub down it refuses "
        "and changes nothing.")
    ur.add_argument("name")
    ur.add_argument("--delete-home", action="store_true",
                    help="delete the home volume instead of keeping it (no confirmation asked)")
    rh = add(users, "restore-home", cmd_users_restore_home,
             "Give a user back a home kept by `users remove` (their server must be stopped; a "
             "home they have now is kept aside first).")
    rh.add_argument("name")
    rh.add_argument("volume", help="the kept volume, as `users remove` or `users add` named it")

    images = sub.add_parser("images", help="Learner images.").add_subparsers(dest="sub",
                                                                             required=True)
    ib = add(images, "build", cmd_images_build, "Build the base and learner images if missing.")
    ib.add_argument("--gpu", action="store_true", help="the CUDA variant (several GB of wheels)")
    add(images, "list", cmd_images_list, "Show the images' tags and versions.")

    gr = add(sub, "grade", cmd_grade,
             "Autograde an nbgrader assignment, each submission in its own sandbox, in parallel.")
    gr.add_argument("assignment")
    gr.add_argument("--course-dir", required=True, help="an nbgrader course directory")
    gr.add_argument("--student", action="append", help="only this student (repeatable)")
    gr.add_argument("--workers", type=int, help="parallel submissions (default: cores)")
    gr.add_argument("--image", help="course image (default: the learner image)")
    gr.add_argument("--force", action="store_true", help="regrade submissions graded already")
    gr.add_argument("--memory", type=_checked("memory"),
                    help="memory per submission (default: grading.memory, 1G)")
    gr.add_argument("--cell-timeout", type=int, help="seconds per cell (default: grading.cell_timeout)")
    gr.add_argument("--notebook-timeout", type=int,
                    help="seconds per notebook (default: grading.notebook_timeout)")
    gr.add_argument("--gpus", type=_checked("gpus"),
                    help="GPUs per submission: none, all, N or device=0,1 (default: grading.gpus)")

    rg = add(sub, "regress", cmd_regress,
             "Run every course notebook with papermill in the course image; check metrics and "
             "grading (solution full marks, released version zero); report tests an "
             "always-equal answer passes.")
    rg.add_argument("course", nargs="*", help="course ids (default: all in courses/)")
    rg.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    rg.add_argument("--full", action="store_true", help="the full parameters (a classroom run)")
    rg.add_argument("--out", default="regress-report", help="report folder (default: ./regress-report)")
    rg.add_argument("--workers", type=int, help="notebooks at once (default: cores)")
    rg.add_argument("--no-qa", action="store_true", help="skip the grading checks")
    rg.add_argument("--strict-tests", action="store_true",
                    help="fail when an always-equal answer passes a test (default: report it)")
    rg.add_argument("--courses-dir", help="where the courses are (default: the repository's courses/)")

    course = sub.add_parser("course", help="Courses as code.").add_subparsers(dest="sub",
                                                                             required=True)
    cl = add(course, "list", cmd_course_list, "List the courses and their assignments.")
    cl.add_argument("--courses-dir", help="default: the repository's courses/")
    add(course, "sync", cmd_course_sync,
        "Make each course's nbgrader directory on the hub match its spec.")

    asg = sub.add_parser("assignment", help="Release, collect, grade, return feedback."
                         ).add_subparsers(dest="sub", required=True)
    for verb, text in (("release", "Generate the student version and release it to learners."),
                       ("collect", "Take each learner's latest submission for grading."),
                       ("grade", "Autograde the collected submissions in the sandbox."),
                       ("feedback", "Generate feedback and hand each learner their own.")):
        ap = add(asg, verb, cmd_assignment, text)
        ap.add_argument("course")
        ap.add_argument("assignment")
        if verb == "grade":
            ap.add_argument("--force", action="store_true", help="regrade graded submissions")

    grades = sub.add_parser("grades", help="Grades.").add_subparsers(dest="sub", required=True)
    ge = add(grades, "export", cmd_grades_export,
             "One row per learner and assignment, late penalties applied.")
    ge.add_argument("course")
    ge.add_argument("--format", choices=["csv"], default="csv")
    ge.add_argument("--out", help="file to write (default: standard output)")

    se = add(sub, "settings", cmd_settings, "Print the settings in force, or their reference.")
    se.add_argument("--reference", action="store_true", help="Markdown reference of all settings")

    bench = sub.add_parser("bench", help="Benchmarks.").add_subparsers(dest="sub", required=True)
    bs = add(bench, "spawn", cmd_bench_spawn,
             "Spawn N learners at once: time to ready, to first `import torch`, memory each.")
    bs.add_argument("--users", type=int, default=5)
    bs.add_argument("--keep", action="store_true", help="leave the bench learners running")
    bg = add(bench, "grade", cmd_bench_grade,
             "Grade one class with stock `nbgrader autograde` and with `onelab grade`; compare.")
    bg.add_argument("--course", choices=["demo", "nbgrader-docs"], default="demo",
                    help="demo: OneLab's generated class; nbgrader-docs: ps1 of nbgrader's "
                         "documentation, the shipped example submissions in turn")
    bg.add_argument("--students", type=int, default=20)
    bg.add_argument("--workers", type=int, help="default: cores")
    bg.add_argument("--flavour", choices=["python", "torch"], default="python",
                    help="demo course only: torch adds a PyTorch training exercise (needs "
                         "torch in .venv)")
    bg.add_argument("--keep", metavar="DIR",
                    help="leave both graded courses in DIR (ours/, stock/), with OneLab's "
                         "per-submission timelines")
    bg.add_argument("--image", help="course image (default: the learner image)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load()
        return args.fn(settings, args)
    except OneLabError as e:
        print(f"onelab: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The exchange's limits against a real hub, sent from inside real learner containers with
their own server tokens and OneLab's nbgrader plugin, as a learner (or an attacker) would: an
archive of 25,000 files, a gzip bomb (1 GiB of zeros in 1 MiB), an upload over the size cap,
resubmissions past the quota and past the resubmission limit. Each is refused with a message
that names the limit and the numbers, stores nothing, and another learner's honest submission
goes through meanwhile."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from onelab.course import courses_dir
from tests.conftest import Platform, start_platform, stop_platform

pytestmark = pytest.mark.integration

COURSE, ASSIGNMENT = "onelab-101", "01-numbers"
LIMITS = {
    "ONELAB_EXCHANGE__MAX_UPLOAD": "8M",
    "ONELAB_EXCHANGE__MAX_UNPACKED": "4M",
    "ONELAB_EXCHANGE__MAX_ENTRIES": "1000",
    "ONELAB_EXCHANGE__QUOTA_PER_LEARNER": "5M",
    "ONELAB_EXCHANGE__MAX_SUBMISSIONS": "4",
    "ONELAB_EXCHANGE__WORKERS": "2",
}

# Runs in a learner's container: builds one kind of archive (a bomb without ever holding it
# uncompressed), waits for GO_AT (so two learners send at once), and submits it through the
# image's own exchange plugin (the server's token, the exchange URL the container is given).
SEND = r'''
import gzip, io, json, os, sys, tarfile, time
import onelab_exchange as ox
course, assignment, kind, arg = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'

def tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()

def bomb(size):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6) as gz:
        nb = tarfile.TarInfo("./numbers.ipynb")
        nb.size = len(NB)
        gz.write(nb.tobuf(format=tarfile.USTAR_FORMAT) + NB + bytes(-len(NB) % 512))
        big = tarfile.TarInfo("./zeros.bin")
        big.size = size
        gz.write(big.tobuf(format=tarfile.USTAR_FORMAT))
        zeros = bytes(1 << 20)
        for _ in range(size >> 20):
            gz.write(zeros)
        gz.write(bytes(1024))
    return buf.getvalue()

nb = [("./numbers.ipynb", NB)]
data = {"files": lambda: tar(nb + [(f"./f{i}.txt", b"") for i in range(arg)]),
        "bomb": lambda: bomb(arg),
        "random": lambda: tar(nb + [("./data.bin", os.urandom(arg))]),
        "zeros": lambda: tar(nb + [("./data.bin", bytes(arg))]),
        "raw": lambda: os.urandom(arg)}[kind]()
while time.time() < float(os.environ.get("GO_AT", "0")):
    time.sleep(0.005)
t0 = time.monotonic()
try:
    out = {"receipt": json.loads(ox._request("POST", f"submit/{course}/{assignment}", data))}
except Exception as e:
    out = {"error": str(e)}
out.update(seconds=round(time.monotonic() - t0, 3), upload=len(data))
print(json.dumps(out, ensure_ascii=False))
'''


@pytest.fixture(scope="module")
def classroom(docker_ready, tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    courses = root / "courses"
    shutil.copytree(courses_dir() / COURSE, courses / COURSE)
    (courses / COURSE / "learners.csv").write_text("username,full_name\namy,Amy\nben,Ben\n")
    p = start_platform(root, ONELAB_COURSES_DIR=str(courses), **LIMITS)
    try:
        p.cli("assignment", "release", COURSE, ASSIGNMENT)
        hubs = {}
        for name in ("amy", "ben"):
            p.add_learner(name)
            hubs[name] = p.login(name)
            hubs[name].start(name)
        for name, hub in hubs.items():
            hub.wait_ready(name)
        yield p
    finally:
        from onelab import dockerdoor

        for ctr in dockerdoor.containers("learner", **{"onelab.instance": f"{p.prefix}-learner"}):
            (root / f"{ctr.name}.log").write_bytes(ctr.logs()[-20000:])  # kept for a failed run
        stop_platform(p)


def send(p: Platform, learner: str, kind: str, arg: int = 0, go_at: float = 0.0) -> dict:
    res = p.container(learner).exec_run(
        ["python3", "-c", SEND, COURSE, ASSIGNMENT, kind, str(arg)], user="1000",
        environment={"HOME": "/home/learner", "GO_AT": str(go_at)})
    out = res.output.decode(errors="replace")
    assert res.exit_code == 0, out
    return json.loads(out.strip().splitlines()[-1])


def stored(p: Platform) -> dict[str, int]:
    """Every file the exchange holds as submitted, with its size; and no leftovers."""
    root = p.state_dir / "exchange"
    assert not [f for f in (root / ".uploads").glob("*")], "an upload's body was left"
    assert not [f for f in (root / COURSE / ".incoming").glob("*")], "a half unpacked folder"
    return {f.relative_to(root).as_posix(): f.stat().st_size
            for f in (root / COURSE / "inbound").rglob("*") if f.is_file()}


def refused(result: dict, status: int, *words: str) -> None:
    error = result.get("error", "")
    assert "the OneLab exchange refused:" in error and f"(HTTP {status})" in error, result
    for w in words:
        assert w in error, (w, error)


def test_an_archive_of_25000_files_is_refused_and_stores_nothing(classroom):
    p = classroom
    before = stored(p)
    result = send(p, "amy", "files", 25_000)
    refused(result, 413, "제출물의 파일 수가 한도(1000개)를 넘었습니다",
            "the submission holds more than 1000 files")
    assert stored(p) == before


def test_a_gzip_bomb_is_refused_while_another_learners_submission_goes_through(classroom):
    p = classroom
    before = stored(p)
    go_at = time.time() + 8  # both archives are built by then (the bomb takes a few seconds)
    results: dict[str, dict] = {}
    threads = [threading.Thread(target=lambda n=n, k=k, a=a: results.__setitem__(
        n, send(p, n, k, a, go_at))) for n, k, a in (("amy", "bomb", 1 << 30),
                                                      ("ben", "random", 64 * 1024))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    bomb, honest = results["amy"], results["ben"]
    assert bomb["upload"] < 2 << 20  # 1 GiB of zeros in about 1 MiB
    refused(bomb, 413, "압축을 푼 크기가 한도(4 MiB)", "the submission unpacks to more than 4 MiB")
    assert "receipt" in honest, honest
    assert honest["seconds"] < 10, honest
    after = stored(p)
    new = {k: v for k, v in after.items() if k not in before}
    assert all(k.startswith(f"{COURSE}/inbound/ben/") for k in new), new
    assert any(k.endswith("/data.bin") and v == 64 * 1024 for k, v in new.items()), new
    assert not any("/amy/" in k for k in after)


def test_an_upload_over_max_upload_is_refused_from_its_headers(classroom):
    p = classroom
    before = stored(p)
    result = send(p, "amy", "raw", 10 << 20)  # 10 MiB: never sent, refused from its size
    refused(result, 413, "업로드 크기(10 MiB)가 한도(8 MiB)를 넘었습니다",
            "the upload is 10 MiB, more than the 8 MiB limit")
    assert result["seconds"] < 5, result
    assert stored(p) == before


def test_resubmissions_past_the_quota_are_refused(classroom):
    p = classroom
    for _ in range(2):  # 2 x 2 MiB of a 5 MiB quota
        assert "receipt" in send(p, "amy", "random", 2 << 20)
    before = stored(p)
    # from its Content-Length: 2 MiB does not fit in what is left
    refused(send(p, "amy", "random", 2 << 20), 507, "저장 한도(5 MiB)",
            "is larger than the", "left of your 5 MiB storage quota in this course")
    # small on the wire, 3 MiB unpacked: refused as it unpacks
    refused(send(p, "amy", "zeros", 3 << 20), 507,
            "the submission is larger than the", "left of your 5 MiB storage quota")
    assert stored(p) == before
    # the learner's own path: the Assignments tab's submit (nbgrader) shows the reason
    ctr = p.container("amy")
    script = (f"nbgrader fetch_assignment {ASSIGNMENT} --course {COURSE} >/dev/null 2>&1; "
              f"head -c 2000000 /dev/urandom > {COURSE}/{ASSIGNMENT}/data.bin; "
              f"nbgrader submit {ASSIGNMENT} --course {COURSE} 2>&1; echo rc=$?; "
              f"nbgrader list --cached --course {COURSE} 2>&1")
    res = ctr.exec_run(["bash", "-c", script], user="1000",
                       environment={"HOME": "/home/learner"}, workdir="/home/learner")
    out = res.output.decode(errors="replace")
    assert "left of your 5 MiB storage quota in this course (HTTP 507)" in out, out
    assert "이 과정의 저장 한도(5 MiB)" in out and "rc=0" not in out, out
    assert stored(p) == before
    assert ASSIGNMENT not in out.split("rc=")[1], out  # not listed as submitted
    from hub.exchange_store import ExchangeStore

    assert 4 << 20 < ExchangeStore(p.state_dir / "exchange").usage(COURSE, "amy") <= 5 << 20


def test_resubmissions_past_the_limit_are_refused(classroom):
    p = classroom
    from hub.exchange_store import ExchangeStore

    store = ExchangeStore(p.state_dir / "exchange")
    while len(store.submissions(COURSE, ASSIGNMENT, learner="ben")) < 4:
        assert "receipt" in send(p, "ben", "random", 1024)
    before = stored(p)
    refused(send(p, "ben", "random", 1024), 429, "이 과제는 4번까지 제출할 수 있습니다(이미 4번 제출함)",
            "at most 4 submissions per assignment (you have made 4)")
    assert stored(p) == before
    assert len(store.submissions(COURSE, ASSIGNMENT, learner="ben")) == 4

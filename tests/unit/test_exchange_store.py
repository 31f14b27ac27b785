"""The exchange's storage: whole submissions or none, every one kept, each learner apart, and
what one learner may send and keep is limited (files, unpacked size, quota, resubmissions):
a refusal says which limit and stores nothing."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from hub.exchange_store import ExchangeError, ExchangeStore, Limits, MiB


def _tar(files: dict[str, bytes], extra: tarfile.TarInfo | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra)
    return buf.getvalue()


def _bomb(size: int, pax: bool = False) -> bytes:
    """A tar.gz of a notebook and then `size` zero bytes (a whole number of MiB) in one file,
    or in a pax header, compressed as it is made: never held in memory uncompressed."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        nb = tarfile.TarInfo("./a.ipynb")
        nb.size = 2
        gz.write(nb.tobuf(format=tarfile.USTAR_FORMAT) + b"{}" + bytes(510))
        big = tarfile.TarInfo("././@PaxHeader" if pax else "./zeros.bin")
        big.size = size
        if pax:
            big.type = tarfile.XHDTYPE
        gz.write(big.tobuf(format=tarfile.USTAR_FORMAT))
        zeros = bytes(MiB)
        for _ in range(size // MiB):
            gz.write(zeros)
        gz.write(bytes(1024))  # the end-of-archive blocks
    return buf.getvalue()


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()


def _exchange(tmp_path: Path, limits: Limits | None = None) -> ExchangeStore:
    s = ExchangeStore(tmp_path / "exchange", limits)
    rel = tmp_path / "release"
    rel.mkdir(exist_ok=True)
    (rel / "a.ipynb").write_text("{}")
    s.release("c1", "hw1", rel)
    s.release("c1", "hw2", rel)
    return s


@pytest.fixture
def store(tmp_path: Path) -> ExchangeStore:
    return _exchange(tmp_path)


SUB = {"./a.ipynb": b'{"cells": []}', "./timestamp.txt": b"1999-01-01 00:00:00 UTC",
       "./submission_secret.txt": b"s3cret"}


def _refused(store: ExchangeStore, data: bytes, status: int, *messages: str,
             learner: str = "amy", assignment: str = "hw1") -> str:
    """Submit, expect a refusal with this status and these words, and nothing stored."""
    course = store.course_dir("c1")
    before = _tree(course / "inbound")
    with pytest.raises(ExchangeError) as info:
        store.submit("c1", learner, assignment, data)
    err = info.value
    assert err.status == status, str(err)
    for m in messages:
        assert m in str(err), str(err)
    assert _tree(course / "inbound") == before  # inbound/ exactly as it was
    assert _tree(course / ".incoming") == set()  # and no half-unpacked folder anywhere
    return str(err)


def test_every_submission_is_kept_with_the_exchanges_time(store):
    first = store.submit("c1", "amy", "hw1", _tar(SUB))
    second = store.submit("c1", "amy", "hw1", _tar(SUB))
    assert first.path != second.path and first.path.exists() and second.path.exists()
    assert not first.timestamp.startswith("1999")  # the learner's clock does not count
    assert (first.path / "learner_timestamp.txt").read_text().startswith("1999")
    assert store.latest("c1", "hw1")["amy"].path == second.path


def test_a_half_written_submission_is_never_seen(store, tmp_path):
    store.submit("c1", "amy", "hw1", _tar(SUB))
    partial = tmp_path / "exchange" / "c1" / "inbound" / "ben" / "hw1" / ".incoming-dead"
    partial.mkdir(parents=True)
    (partial / "a.ipynb").write_text("{")
    assert [s.learner for s in store.submissions("c1", "hw1")] == ["amy"]
    assert set(store.latest("c1", "hw1")) == {"amy"}


@pytest.mark.parametrize("data, message", [
    (b"not a tarball", "not a readable tar.gz"),
    (_tar({"../escape.ipynb": b"{}"}), "forbidden entry"),
    (_tar({"/etc/escape.ipynb": b"{}"}), "forbidden entry"),
    (_tar({"./a.txt": b"x", "./timestamp.txt": b"t"}), "holds no notebook"),
    (_tar(SUB)[:-40], "not a readable tar.gz"),  # cut short
])
def test_bad_uploads_are_refused_and_leave_nothing(store, data, message):
    store.submit("c1", "amy", "hw1", _tar(SUB))  # inbound/ holds one, which stays as it is
    _refused(store, data, 400, message)
    assert len(store.submissions("c1")) == 1


def test_a_first_refused_submission_leaves_no_folder_at_all(store):
    _refused(store, b"not a tarball", 400, "업로드가", "not a readable tar.gz")
    assert not (store.course_dir("c1") / "inbound").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                  tarfile.FIFOTYPE])
def test_links_and_devices_are_refused(store, kind):
    entry = tarfile.TarInfo("./evil")
    entry.type, entry.linkname = kind, "/etc/passwd" if kind != tarfile.LNKTYPE else "a.ipynb"
    _refused(store, _tar(SUB, extra=entry), 400, "forbidden entry", "'./evil'")


def test_unknown_assignments_and_bad_names_are_refused(store):
    with pytest.raises(ExchangeError, match="not released") as info:
        store.submit("c1", "amy", "hw9", _tar(SUB))
    assert info.value.status == 404
    with pytest.raises(ExchangeError, match="bad learner name"):
        store.submit("c1", "../ben", "hw1", _tar(SUB))


# -- limits ---------------------------------------------------------------------------------

def test_more_files_than_the_limit_is_refused_at_the_first_one_past_it(tmp_path):
    store = _exchange(tmp_path, Limits(max_entries=10))
    ten = {"./a.ipynb": b"{}", **{f"./f{i}.txt": b"x" for i in range(9)}}
    assert store.submit("c1", "amy", "hw1", _tar(ten)).path.exists()
    many = _tar({"./a.ipynb": b"{}", **{f"./f{i}.txt": b"x" for i in range(25_000)}})
    t0 = time.monotonic()
    msg = _refused(store, many, 413, "한도(10개)", "more than 10 files")
    assert time.monotonic() - t0 < 2  # stops at the 11th header, never reads all 25,001
    assert msg == "제출물의 파일 수가 한도(10개)를 넘었습니다 / the submission holds more than 10 files"
    assert len(store.submissions("c1")) == 1


def test_a_gzip_bomb_is_refused_at_the_unpacked_limit(tmp_path):
    store = _exchange(tmp_path, Limits(max_unpacked=4 * MiB))
    bomb = _bomb(256 * MiB)  # 256 MiB of zeros in ~250 KiB
    assert len(bomb) < MiB
    t0 = time.monotonic()
    _refused(store, bomb, 413, "한도(4 MiB)", "the submission unpacks to more than 4 MiB")
    assert time.monotonic() - t0 < 2  # refused from the header: nothing decompressed
    ok = _bomb(3 * MiB)
    assert (store.submit("c1", "amy", "hw1", ok).path / "zeros.bin").stat().st_size == 3 * MiB


def test_a_bomb_hidden_in_a_pax_header_stops_at_the_decompression_cap(tmp_path):
    """tarfile reads a pax header whole; the stream itself is capped, so it reads no more
    than the limits allow (not 256 MiB into memory)."""
    store = _exchange(tmp_path, Limits(max_unpacked=2 * MiB))
    _refused(store, _bomb(256 * MiB, pax=True), 413, "unpacks to more than 2 MiB")


def test_uploads_over_max_upload_are_refused_before_reading(tmp_path):
    store = _exchange(tmp_path, Limits(max_upload=64 * 1024))
    big = _tar({"./a.ipynb": b"{}", "./noise.bin": os.urandom(100 * 1024)})
    _refused(store, big, 413, "한도(64 KiB)", "more than the 64 KiB limit")
    with pytest.raises(ExchangeError, match="more than the 64 KiB limit"):
        store.check_room("c1", "amy", "hw1", upload=65 * 1024)  # from Content-Length alone


def test_resubmissions_past_the_limit_are_refused(tmp_path):
    store = _exchange(tmp_path, Limits(max_submissions=2))
    store.submit("c1", "amy", "hw1", _tar(SUB))
    store.submit("c1", "amy", "hw1", _tar(SUB))
    msg = _refused(store, _tar(SUB), 429, "2번까지", "at most 2 submissions per assignment "
                   "(you have made 2)")
    assert msg.startswith("이 과제는 2번까지 제출할 수 있습니다")
    with pytest.raises(ExchangeError) as info:
        store.check_room("c1", "amy", "hw1", upload=10)
    assert info.value.status == 429
    # another assignment, and another learner, count apart
    assert store.submit("c1", "amy", "hw2", _tar(SUB)).path.exists()
    assert store.submit("c1", "ben", "hw1", _tar(SUB)).path.exists()


def test_the_quota_counts_every_kept_submission_of_the_course(tmp_path):
    store = _exchange(tmp_path, Limits(quota_per_learner=3 * MiB))
    sub = {"./a.ipynb": b"{}", "./data.bin": os.urandom(MiB + 200 * 1024)}  # 1.2 MiB
    store.submit("c1", "amy", "hw1", _tar(sub))
    store.submit("c1", "amy", "hw2", _tar(sub))  # another assignment: the same quota
    assert store.usage("c1", "amy") > 2 * MiB
    msg = _refused(store, _tar(sub), 507, "저장 한도(3 MiB)", "left of your 3 MiB storage "
                   "quota in this course")
    assert "(1.2 MiB)" in msg  # what was sent, and what was left, with numbers
    assert store.submit("c1", "ben", "hw1", _tar(sub)).path.exists()  # ben has his own
    small = {"./a.ipynb": b"{}", "./d.bin": os.urandom(400 * 1024)}
    assert store.submit("c1", "amy", "hw1", _tar(small)).path.exists()  # what fits, fits
    store.limits = Limits(quota_per_learner=2 * MiB)  # lowered by the operator
    with pytest.raises(ExchangeError, match="used all of your 2 MiB") as info:
        store.check_room("c1", "amy", "hw1", upload=100)
    assert info.value.status == 507


def test_the_quota_is_counted_on_what_unpacks_not_on_the_upload(tmp_path):
    store = _exchange(tmp_path, Limits(quota_per_learner=2 * MiB, max_unpacked=8 * MiB))
    _refused(store, _bomb(3 * MiB), 507, "the submission is larger than the 2 MiB left")


def test_two_uploads_at_once_cannot_both_fit_in_the_quota(tmp_path):
    store = _exchange(tmp_path, Limits(quota_per_learner=3 * MiB))
    sub = _tar({"./a.ipynb": b"{}", "./data.bin": os.urandom(2 * MiB)})

    def send(_: int) -> int:
        try:
            store.submit("c1", "amy", "hw1", sub)
            return 201
        except ExchangeError as e:
            return e.status

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(send, range(4)))
    assert statuses == [201, 507, 507, 507]
    assert len(store.submissions("c1", learner="amy")) == 1


def test_limits_come_from_the_settings_the_hub_passes_to_the_service(tmp_path):
    from traitlets.config import Config

    from hub.courses import EXCHANGE_SERVICE, configure_courses
    from hub.exchange_service import exchange_settings
    from onelab.settings import load
    from tests.courses import minicourse

    courses = minicourse.write(tmp_path / "courses")
    s = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path / "state"),
                                 "ONELAB_COURSES_DIR": str(courses),
                                 "ONELAB_EXCHANGE__QUOTA_PER_LEARNER": "2g",
                                 "ONELAB_EXCHANGE__MAX_ENTRIES": "50"})
    c = Config()
    configure_courses(c, s, "172.30.0.1")
    env = next(x for x in c.JupyterHub.services if x["name"] == EXCHANGE_SERVICE)["environment"]
    assert not any("SECRET" in k or "TOKEN" in k or "DB" in k for k in env)
    got = exchange_settings(env)
    assert got == s.exchange
    limits = Limits.from_settings(got)
    assert (limits.quota_per_learner, limits.max_entries, limits.max_upload,
            limits.max_submissions) == (2 << 30, 50, 100 * MiB, 20)


# -- the service: streamed to disk, refused from the headers, unpacked off the event loop ----

@pytest.fixture
def service(tmp_path: Path, monkeypatch) -> Iterator[tuple[str, ExchangeStore]]:
    """The real Tornado app on a loopback port; the hub's answer to "who is this" is the
    token itself, `token amy` is amy (the hub is in tests/integration)."""
    from hub.exchange_service import Base, Courses, make_app
    from onelab.course import load_courses
    from tests.courses import minicourse

    courses = minicourse.write(tmp_path / "courses")
    spec = courses / minicourse.COURSE / "course.yml"
    spec.write_text(spec.read_text().replace("instructors: [instructor]",
                                             "instructors: [teacher]\nlearners: [amy, ben]"),
                    encoding="utf-8")
    def who(self) -> dict | None:
        name = self.request.headers.get("Authorization", "").removeprefix("token ")
        return {"name": name} if name else None

    monkeypatch.setattr(Base, "get_current_user", who)
    store = ExchangeStore(tmp_path / "exchange", Limits(max_upload=2 * MiB, max_entries=100,
                                                         max_unpacked=4 * MiB))
    rel = tmp_path / "release"
    rel.mkdir()
    (rel / "a.ipynb").write_text("{}")
    store.release(minicourse.COURSE, "hw1", rel)
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        app = make_app(store, Courses(load_courses(courses)), "/x/", workers=2)
        app.listen(port, "127.0.0.1", max_body_size=64 * 1024)
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    yield f"http://127.0.0.1:{port}/x/api/submit/{minicourse.COURSE}/hw1", store
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_the_service_refuses_from_content_length_before_the_body_is_sent(service):
    url, store = service
    port = int(url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sk:
        sk.sendall((f"POST /x/api/submit/mini/hw1 HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: token amy\r\nContent-Length: {3 * MiB}\r\n"
                    "Expect: 100-continue\r\n\r\n").encode())
        answer = b""  # no body sent: the answer comes from the headers alone
        while chunk := sk.recv(65536):
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "the upload is 3 MiB, more than the 2 MiB limit" in answer
    assert not list((store.root / ".uploads").glob("*"))
    assert store.submissions("mini") == []


def test_the_service_streams_stores_and_refuses_with_a_json_message(service):
    url, store = service
    amy = {"Authorization": "token amy"}
    ok = requests.post(url, data=_tar(SUB), headers=amy, timeout=30)
    assert ok.status_code == 201, ok.text
    assert (store.root / "mini" / "inbound" / "amy" / "hw1" / ok.json()["receipt"]).is_dir()
    many = _tar({"./a.ipynb": b"{}", **{f"./f{i}": b"" for i in range(500)}})
    r = requests.post(url, data=many, headers=amy, timeout=30)
    assert r.status_code == 413
    assert r.json()["error"] == ("제출물의 파일 수가 한도(100개)를 넘었습니다 / the submission "
                                 "holds more than 100 files")
    r = requests.post(url, data=_bomb(64 * MiB), headers=amy, timeout=30)
    assert r.status_code == 413 and "unpacks to more than 4 MiB" in r.json()["error"]
    r = requests.post(url, data=iter([_tar(SUB)]), headers=amy, timeout=30)  # chunked
    assert r.status_code == 411 and "Content-Length" in r.json()["error"]
    r = requests.post(url, data=_tar(SUB), headers={"Authorization": "token teacher"}, timeout=30)
    assert r.status_code == 403
    r = requests.post(url, data=_tar(SUB), headers={"Authorization": "token carl"}, timeout=30)
    assert r.status_code == 404  # not carl's course: the same as no course at all
    for method in ("GET", "PUT", "DELETE"):  # nothing reads, changes or removes submissions
        assert requests.request(method, url, headers=amy, timeout=30).status_code == 405
    assert len(store.submissions("mini")) == 1
    assert not list((store.root / ".uploads").glob("*"))  # bodies removed, kept or refused
    assert not list((store.root / "mini" / ".incoming").glob("*"))


def test_a_slow_unpack_does_not_stall_the_others(service, monkeypatch):
    """While amy's upload takes 3 s to unpack, the service answers at once: her second upload
    is turned away, and ben's submission is stored in the other worker."""
    url, store = service
    import hub.exchange_store as es

    real, first_call = es.safe_extract, threading.Event()

    def slow(fileobj, dest, **kw):
        if not first_call.is_set():
            first_call.set()
            time.sleep(3)
        return real(fileobj, dest, **kw)

    monkeypatch.setattr(es, "safe_extract", slow)
    with ThreadPoolExecutor(1) as pool:
        amy = pool.submit(requests.post, url, data=_tar(SUB),
                          headers={"Authorization": "token amy"}, timeout=30)
        assert first_call.wait(10)
        t0 = time.monotonic()
        r = requests.post(url, data=_tar(SUB), headers={"Authorization": "token amy"}, timeout=30)
        assert r.status_code == 429 and "still in progress" in r.json()["error"]
        r = requests.post(url, data=_tar(SUB), headers={"Authorization": "token ben"}, timeout=30)
        assert r.status_code == 201, r.text
        assert time.monotonic() - t0 < 1.5 and not amy.done()
        assert amy.result().status_code == 201
    assert {s.learner for s in store.submissions("mini")} == {"amy", "ben"}


def _plugin(monkeypatch, url: str):
    """The learner image's exchange plugin, as its container runs it."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "onelab_exchange", root / "images" / "learner" / "onelab" / "onelab_exchange.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setenv("ONELAB_EXCHANGE_URL", url.split("api/")[0])
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "amy")
    return mod


def test_the_learner_plugin_shows_the_services_reason(service, monkeypatch):
    url, store = service
    plugin = _plugin(monkeypatch, url)  # its server token is "amy" here
    receipt = json.loads(plugin._request("POST", "submit/mini/hw1", _tar(SUB)))
    assert (store.root / "mini" / "inbound" / "amy" / "hw1" / receipt["receipt"]).is_dir()
    big = _tar({"./a.ipynb": b"{}", "./noise.bin": os.urandom(3 * MiB)})
    t0 = time.monotonic()
    with pytest.raises(Exception) as info:  # nbgrader's ExchangeError, with the reason
        plugin._request("POST", "submit/mini/hw1", big)
    assert str(info.value) == (
        "the OneLab exchange refused: 업로드 크기(3.0 MiB)가 한도(2 MiB)를 넘었습니다 / the "
        "upload is 3.0 MiB, more than the 2 MiB limit (HTTP 413)")
    assert time.monotonic() - t0 < 5  # refused from the headers, no 30 s wait for a go-ahead
    # 40 MiB is refused before it is sent: a plain POST gets a reset connection, no reason
    with pytest.raises(Exception, match=r"the upload is 40 MiB, more than the 2 MiB limit"):
        plugin._request("POST", "submit/mini/hw1", os.urandom(40 * MiB))
    many = _tar({"./a.ipynb": b"{}", **{f"./f{i}": b"" for i in range(500)}})
    with pytest.raises(Exception, match=r"more than 100 files \(HTTP 413\)"):
        plugin._request("POST", "submit/mini/hw1", many)
    assert len(store.submissions("mini")) == 1


def test_a_full_disk_is_a_507_and_leaves_nothing(store, monkeypatch):
    import errno

    import hub.exchange_store as es

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(es.os, "fsync", full)
    _refused(store, _tar(SUB), 507, "디스크가 가득 찼습니다", "the exchange's disk is full")

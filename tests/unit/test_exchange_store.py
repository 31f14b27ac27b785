"""The exchange's storage: whole submissions or none, every one kept, each learner apart."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from hub.exchange_store import ExchangeError, ExchangeStore


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


@pytest.fixture
def store(tmp_path: Path) -> ExchangeStore:
    s = ExchangeStore(tmp_path / "exchange")
    rel = tmp_path / "release"
    rel.mkdir()
    (rel / "a.ipynb").write_text("{}")
    s.release("c1", "hw1", rel)
    return s


SUB = {"./a.ipynb": b'{"cells": []}', "./timestamp.txt": b"1999-01-01 00:00:00 UTC",
       "./submission_secret.txt": b"s3cret"}


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
    (_tar({"./a.txt": b"x", "./timestamp.txt": b"t"}), "holds no notebook"),
])
def test_bad_uploads_are_refused_and_leave_nothing(store, tmp_path, data, message):
    with pytest.raises(ExchangeError, match=message):
        store.submit("c1", "amy", "hw1", data)
    assert store.submissions("c1") == []
    assert not list((tmp_path / "exchange" / "c1" / "inbound" / "amy" / "hw1").iterdir())


def test_links_and_unknown_assignments_are_refused(store):
    link = tarfile.TarInfo("./evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(ExchangeError, match="forbidden entry"):
        store.submit("c1", "amy", "hw1", _tar(SUB, extra=link))
    with pytest.raises(ExchangeError, match="not released"):
        store.submit("c1", "amy", "hw9", _tar(SUB))
    with pytest.raises(ExchangeError, match="bad learner name"):
        store.submit("c1", "../ben", "hw1", _tar(SUB))

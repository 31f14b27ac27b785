"""OneLab's nbgrader exchange, learner side: nbgrader's own exchange on a private folder,
synced with the hub's exchange service (hub/exchange_service.py).

No directory is shared between learners. Listing, fetching and fetching feedback first pull
what the service gives this learner (their courses' released assignments and their own
feedback) into ~/.local/share/onelab/exchange; a submission is written there by nbgrader and
then uploaded; nbgrader reports it submitted only once the service has acknowledged it.
Authenticated with the server's hub token ($JUPYTERHUB_API_TOKEN); the service answers to the
hub's idea of who this is, never to anything in the request.
"""

import http.client
import io
import json
import os
import select
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from nbgrader.exchange import ExchangeError
from nbgrader.exchange.default import (
    ExchangeFetchAssignment,
    ExchangeFetchFeedback,
    ExchangeList,
    ExchangeSubmit,
)

DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".local", "share", "onelab", "exchange")


def _config():
    base = os.environ.get("ONELAB_EXCHANGE_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not base or not token:
        raise ExchangeError("the OneLab exchange is not configured in this server "
                            "(no ONELAB_EXCHANGE_URL or JUPYTERHUB_API_TOKEN)")
    return base.rstrip("/") + "/api/", token


def _refused(code, raw, reason):
    """The service's own reason (Korean / English, with the limit and the numbers)."""
    try:
        why = json.loads(raw.decode()).get("error") or reason
    except ValueError:
        why = reason
    return ExchangeError(f"the OneLab exchange refused: {why} (HTTP {code})")


def _request(method, path, data=None, timeout=120):
    if method == "POST" and data is not None:
        return _upload(path, data)
    base, token = _config()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": "token " + token})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        raise _refused(e.code, e.read(), e.reason) from None
    except (urllib.error.URLError, OSError) as e:
        raise ExchangeError(f"the OneLab exchange cannot be reached: {e}") from None


def _upload(path, data, timeout=600):
    """POST with `Expect: 100-continue`: the service refuses what cannot fit (too large, over
    the quota, too many submissions) from the headers, before the body is sent, and the
    learner reads its reason instead of a connection reset half way through the upload."""
    base, token = _config()
    url = urllib.parse.urlsplit(base + path)
    https = url.scheme == "https"
    conn = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(
        url.hostname, url.port, timeout=timeout)
    try:
        conn.putrequest("POST", url.path)
        conn.putheader("Authorization", "token " + token)
        conn.putheader("Content-Type", "application/gzip")
        conn.putheader("Content-Length", str(len(data)))
        if not https:
            conn.putheader("Expect", "100-continue")
        conn.endheaders()
        if https or _go_ahead(conn.sock):
            try:
                conn.send(data)
            except OSError:
                pass  # refused part way through: the answer says why
        resp = conn.getresponse()  # skips a "100 Continue" itself
        body = resp.read()
    except (http.client.HTTPException, OSError) as e:
        raise ExchangeError(f"the OneLab exchange cannot be reached: {e}") from None
    finally:
        conn.close()
    if resp.status >= 400:
        raise _refused(resp.status, body, resp.reason)
    return body


def _go_ahead(sock, wait=30.0):
    """True once the service answers "100 Continue" (or says nothing for `wait` seconds, as
    one without 100-continue would); False when its final answer came first."""
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            return True
        seen = sock.recv(16, socket.MSG_PEEK)
        if not seen:
            return False  # closed: getresponse() reports it
        if len(seen) >= 12:
            return seen[9:12] == b"100"
        time.sleep(0.02)  # the status line is still arriving


def _extract(data, dest):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            p = Path(m.name)
            if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
                raise ExchangeError(f"unexpected entry from the exchange: {m.name}")
        try:
            tar.extractall(dest, filter="data")
        except TypeError:  # a Python without extraction filters; entries were checked above
            tar.extractall(dest)


class _Synced:
    """Pull before nbgrader looks at the (private) exchange folder."""

    def _call(self, method, path, data=None):
        try:
            return _request(method, path, data)
        except ExchangeError as e:
            self.fail(str(e))  # logged for the learner (CLI and server log), then raised

    def _courses(self):
        if self.coursedir.course_id:
            return [self.coursedir.course_id]
        return [c["id"] for c in json.loads(self._call("GET", "courses"))["courses"]]

    def pull(self):
        root = Path(self.root)
        root.mkdir(parents=True, exist_ok=True)
        courses = self._courses()
        if not self.coursedir.course_id:  # a course this learner left is gone here too
            for old in root.iterdir():
                if old.is_dir() and not old.name.startswith(".") and old.name not in courses:
                    shutil.rmtree(old, ignore_errors=True)
        for course in courses:
            tmp = root / f".pull-{course}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            _extract(self._call("GET", f"pull/{course}"), tmp)
            dest = root / course
            dest.mkdir(exist_ok=True)
            for part in ("outbound", "feedback"):
                shutil.rmtree(dest / part, ignore_errors=True)
                src = tmp / part
                if src.exists():
                    src.rename(dest / part)
                else:
                    (dest / part).mkdir()
            (dest / "inbound").mkdir(exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)


class OneLabList(_Synced, ExchangeList):
    def start(self):
        if not (self.inbound or self.cached or self.remove):
            self.pull()
        elif self.cached:
            self.pull()  # feedback state shows with the submitted list
        return super().start()


class OneLabFetchAssignment(_Synced, ExchangeFetchAssignment):
    def start(self):
        self.pull()
        return super().start()


class OneLabFetchFeedback(_Synced, ExchangeFetchFeedback):
    def start(self):
        self.pull()
        return super().start()


class OneLabSubmit(_Synced, ExchangeSubmit):
    def start(self):
        self.pull()
        return super().start()

    def copy_files(self):
        super().copy_files()  # nbgrader's own copy: private inbound folder and the cache
        local = Path(self.inbound_path) / self.assignment_filename
        cache = Path(self.cache_path) / (self.assignment_filename.rsplit("+", 1)[0]
                                         if self.add_random_string else self.assignment_filename)
        # Until the exchange acknowledges it, the cached copy is hidden from `list` (a killed
        # container or a refused upload must not look submitted); shown again on receipt.
        pending = cache.with_name(".pending-" + cache.name)
        cache.rename(pending)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(local, arcname=".")
        try:
            receipt = json.loads(self._call(
                "POST", f"submit/{self.coursedir.course_id}/{self.coursedir.assignment_id}",
                buf.getvalue()))
        except ExchangeError:
            shutil.rmtree(pending, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(local, ignore_errors=True)
        pending.rename(cache)
        self.log.info("The OneLab exchange received the submission (%s at %s)",
                      receipt.get("receipt"), receipt.get("timestamp"))

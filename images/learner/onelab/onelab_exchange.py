"""OneLab's nbgrader exchange, learner side: nbgrader's own exchange on a private folder,
synced with the hub's exchange service (hub/exchange_service.py).

No directory is shared between learners. Listing, fetching and fetching feedback first pull
what the service gives this learner (their courses' released assignments and their own
feedback) into ~/.local/share/onelab/exchange; a submission is written there by nbgrader and
then uploaded; nbgrader reports it submitted only once the service has acknowledged it.
Authenticated with the server's hub token ($JUPYTERHUB_API_TOKEN); the service answers to the
hub's idea of who this is, never to anything in the request.
"""

import io
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from nbgrader.exchange import ExchangeError
from nbgrader.exchange.default import (ExchangeFetchAssignment, ExchangeFetchFeedback,
                                       ExchangeList, ExchangeSubmit)

DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".local", "share", "onelab", "exchange")


def _request(method, path, data=None, timeout=120):
    base = os.environ.get("ONELAB_EXCHANGE_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not base or not token:
        raise ExchangeError("the OneLab exchange is not configured in this server "
                            "(no ONELAB_EXCHANGE_URL or JUPYTERHUB_API_TOKEN)")
    req = urllib.request.Request(base.rstrip("/") + "/api/" + path, data=data, method=method,
                                 headers={"Authorization": "token " + token})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read().decode()).get("error") or e.reason
        except ValueError:
            why = e.reason
        raise ExchangeError(f"the OneLab exchange refused: {why} (HTTP {e.code})") from None
    except (urllib.error.URLError, OSError) as e:
        raise ExchangeError(f"the OneLab exchange cannot be reached: {e}") from None


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

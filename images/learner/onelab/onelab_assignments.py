"""OneLab's Assignments panel, server side (a Jupyter server extension in the learner image).

JupyterLab's left sidebar shows the learner's courses and released assignments (the panel is
images/labextension). This extension answers it, on the learner's own server:

    GET  onelab/api/coursework               courses, assignments, status, the panel's words
    POST onelab/api/fetch     {course, assignment}
    POST onelab/api/submit    {course, assignment}
    POST onelab/api/feedback  {course, assignment}   fetch the returned feedback
    POST onelab/api/validate  {path}                 one notebook, as nbgrader validates it

What the hub knows (due dates, submissions as the exchange received them, feedback and the
score returned with it) comes from the exchange service's /api/coursework; what is here (a
fetched copy, its notebooks, fetched feedback) from the learner's home. Fetch, submit and
feedback go through nbgrader's own assignment-list manager (nbgrader's learner extension, whose
exchange is OneLab's: onelab_exchange.py), so nothing here bypasses nbgrader. Every word the
panel shows comes from OneLab's message catalogue (copied into the image with it).
"""

import json
import os
import traceback
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

LOCALE_DIR = Path(os.environ.get("ONELAB_LOCALE_DIR", "/opt/onelab/share/locale"))
LANGUAGES = ("ko", "en")


def N_(text):
    """Marks a message for the catalogue; translated when sent."""
    return text


# The panel's own words (the front end asks for them by these English keys).
PANEL = [
    N_("Assignments"), N_("My assignments"), N_("Refresh"), N_("Fetch"), N_("Open"),
    N_("Validate"), N_("Submit"), N_("Open feedback"), N_("Fetch feedback"), N_("Due"),
    N_("No due date"), N_("Not fetched yet"), N_("Fetched, not submitted"),
    N_("Submitted"), N_("late"), N_("Feedback ready"), N_("Score"), N_("Working…"),
    N_("No assignment has been released to you yet."),
    N_("You are not a learner in any course."),
    N_("Submit this assignment? You can submit again before the due date; the last one counts."),
    N_("Submitted: the exchange has received it."),
    N_("Fetched into {path}."), N_("Feedback fetched."),
    N_("The assignments could not be loaded: {error}"),
    N_("Past due"),
]


def _read_po(lang):
    """{msgid: msgstr} of the catalogue (Babel is in the image, as JupyterLab's server's)."""
    if lang == "en":
        return {}
    path = LOCALE_DIR / lang / "LC_MESSAGES" / "onelab.po"
    try:
        from babel.messages.pofile import read_po

        with path.open("rb") as fh:
            cat = read_po(fh)
    except (OSError, ImportError, ValueError):
        return {}
    return {m.id: m.string for m in cat if m.id and m.string and not m.fuzzy
            and isinstance(m.id, str)}


_CATALOGUES = {}


def language():
    """The learner's language: what the hub passed (ONELAB_LANG), Korean by default. It is
    JupyterLab's default locale too (jupyter_server_config.py in the image)."""
    lang = (os.environ.get("ONELAB_LANG") or "ko").split("_")[0].split("-")[0].lower()
    return lang if lang in LANGUAGES else "ko"


def translate(lang):
    if lang not in _CATALOGUES:
        _CATALOGUES[lang] = _read_po(lang)
    table = _CATALOGUES[lang]
    return lambda text: table.get(text) or text


def _nbgrader_error(output):
    """The words of a failed nbgrader action: its own message, without a traceback's noise."""
    value = str((output or {}).get("value") or "")
    lines = [ln for ln in value.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if "ExchangeError" in line or "refused" in line or "cannot be reached" in line:
            return line.split(": ", 1)[-1] if "ExchangeError:" in line else line
    return lines[-1] if lines else "unknown error"


class Base(APIHandler):
    @property
    def manager(self):
        return self.settings["assignment_list_manager"]

    @property
    def root(self):
        return Path(self.settings["server_root_dir"]).expanduser().resolve()

    def body(self, *keys):
        try:
            data = json.loads(self.request.body or b"{}")
            return [str(data[k]) for k in keys]
        except (ValueError, KeyError, TypeError):
            raise web.HTTPError(400, "expected JSON with " + ", ".join(keys)) from None

    def relative(self, path):
        return str(path.relative_to(self.root))


class CourseworkHandler(Base):
    @web.authenticated
    async def get(self):
        import onelab_exchange

        lang = language()
        _ = translate(lang)
        try:
            hub = json.loads(await self._hub(onelab_exchange))
            error = None
        except Exception as e:  # noqa: BLE001 - shown to the learner, the panel stays usable
            hub, error = {"courses": []}, str(e)
        courses = []
        for course in hub.get("courses", []):
            for a in course["assignments"]:
                self._local(course["id"], a)
            courses.append(course)
        self.finish(json.dumps({
            "lang": lang, "error": error, "courses": courses,
            "messages": {k: _(k) for k in PANEL}}))

    async def _hub(self, exchange):
        from tornado.ioloop import IOLoop

        return await IOLoop.current().run_in_executor(
            None, lambda: exchange._request("GET", "coursework", timeout=30))

    def _local(self, course, a):
        """What is in the learner's home: the fetched copy and the fetched feedback."""
        folder = self.root / course / a["id"]
        a["fetched"] = folder.is_dir()
        a["path"] = self.relative(folder) if folder.is_dir() else None
        a["notebooks"] = sorted(self.relative(p) for p in folder.glob("*.ipynb")
                                ) if folder.is_dir() else []
        fb = sorted(folder.glob("feedback/*/*.html")) if folder.is_dir() else []
        newest = max((p.parent.name for p in fb), default=None)
        a["feedback_files"] = [self.relative(p) for p in fb if p.parent.name == newest]
        if a.get("score") is not None:
            status = "graded"
        elif a.get("feedback"):
            status = "feedback"
        elif a.get("submissions"):
            status = "submitted"
        elif a["fetched"]:
            status = "fetched"
        else:
            status = "not_fetched"
        a["status"] = status


class ActionHandler(Base):
    @web.authenticated
    async def post(self, action):
        from tornado.ioloop import IOLoop

        _ = translate(language())
        if action == "validate":
            (path,) = self.body("path")
            result = await IOLoop.current().run_in_executor(None, self._validate, path)
            self.finish(json.dumps(result))
            return
        course, assignment = self.body("course", "assignment")
        run = {"fetch": self.manager.fetch_assignment, "submit": self.manager.submit_assignment,
               "feedback": self.manager.fetch_feedback}[action]
        # on this thread, as nbgrader's own handlers do: its manager changes the working
        # directory of the whole process while it works
        output = run(course, assignment)
        if isinstance(output, dict) and not output.get("success", True):
            self.finish(json.dumps({"success": False, "message": _nbgrader_error(output)}))
            return
        if action == "fetch":
            msg = _("Fetched into {path}.").format(path=f"{course}/{assignment}")
        elif action == "submit":
            msg = _("Submitted: the exchange has received it.")
        else:
            msg = _("Feedback fetched.")
        self.finish(json.dumps({"success": True, "message": msg}))

    def _validate(self, path):
        """nbgrader's validation of one notebook of the learner's, in words."""
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root) or target.suffix != ".ipynb":
            raise web.HTTPError(403, "not a notebook of yours")
        try:
            from nbgrader.validator import Validator

            config = self.manager.load_config()
            result = Validator(config=config).validate(str(target))
        except Exception:  # noqa: BLE001 - the learner reads what went wrong
            return {"success": False, "message": traceback.format_exc().strip().splitlines()[-1]}
        return {"success": True, "result": result, "passed": not any(
            result.get(k) for k in ("failed", "changed", "type_changed"))}


def _jupyter_server_extension_points():
    return [{"module": "onelab_assignments"}]


def _load_jupyter_server_extension(app):
    from onelab_notices import NoticesHandler

    base = app.web_app.settings["base_url"]
    app.web_app.add_handlers(".*$", [
        (url_path_join(base, "onelab/api/notices"), NoticesHandler),
        (url_path_join(base, "onelab/api/coursework"), CourseworkHandler),
        (url_path_join(base, r"onelab/api/(fetch|submit|feedback|validate)"), ActionHandler),
    ])
    app.log.info("OneLab assignments panel API at %sonelab/api/", base)

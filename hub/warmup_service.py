"""The class scheduler, a hub-managed service: every `classes.check_every` seconds it warms the
courses whose `sessions:` start within `classes.warm_before` seconds (hub/warmup.py). JupyterHub
starts it with the hub and starts it again if it ends; the hub gives it the settings' ONELAB_*
environment, so it reads the same settings the hub does."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("onelab.classes")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[classes %(levelname)s] %(message)s")
    from hub.lifeline import die_with_parent
    from hub.warmup import warm_due_sessions
    from onelab.settings import load

    die_with_parent()  # a killed hub takes its scheduler along (hub/lifeline.py)
    settings = load()
    log.info("watching the courses' sessions every %d s (warming %d s ahead)",
             settings.classes.check_every, settings.classes.warm_before)
    try:
        while True:
            try:
                warm_due_sessions(settings, log.info)
            except Exception:  # a hub busy or restarting: the next look tries again
                log.exception("could not warm a session now; trying again")
            time.sleep(settings.classes.check_every)
    except KeyboardInterrupt:  # the hub stops its services with SIGINT
        log.info("stopped")


if __name__ == "__main__":
    main()

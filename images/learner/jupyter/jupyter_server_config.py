"""The learner's JupyterLab (and Notebook 7) speaks the learner's OneLab language.

The hub passes that language as ONELAB_LANG (hub/spawner.py). At each server start this points
JupyterLab's application settings folder, whose overrides are the defaults of its settings, at
the image's folder for that language: /opt/onelab/share/lab-settings/<ko|en>/, holding the
locale (overrides.json) and OneLab's other defaults (overrides.d/onelab.json). The folders are
read-only parts of the image, so nothing is written at start and a learner cannot change them.
A language the learner picks in JupyterLab's Settings > Language menu is a user setting (kept in
their home) and wins over these defaults.
"""

import json
import os
from pathlib import Path

from onelab_assignments import language

c = get_config()  # noqa: F821 (traitlets gives a config file get_config)
c.LabServerApp.app_settings_dir = str(Path("/opt/onelab/share/lab-settings") / language())

# Behind HTTPS the hub asks for Secure cookies (JUPYTERHUB_COOKIE_OPTIONS, hub/tls.py); the
# server's login cookie takes them from there, its own _xsrf cookie only from here
# (jupyterhub-singleuser still adds the path, /user/<name>/).
if json.loads(os.environ.get("JUPYTERHUB_COOKIE_OPTIONS") or "{}").get("secure"):
    c.ServerApp.tornado_settings = {"xsrf_cookie_kwargs": {"secure": True}}

# The learner's first kernel is started ahead, with the course's heavy imports done
# (onelab_kernels.py; ONELAB_PREWARM names the modules, empty turns it off).
if os.environ.get("ONELAB_PREWARM"):
    c.ServerApp.kernel_manager_class = "onelab_kernels.PooledKernelManager"

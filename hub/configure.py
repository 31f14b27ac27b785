"""Turn OneLab settings into JupyterHub configuration: ``configure(c, settings)``.

Each ``configure_<area>`` sets one concern on a plain traitlets Config, so each can be tested
on its own. Nothing here starts, creates, binds or copies anything: `onelab up` prepares the
learner network, the secrets and the ports first (hub/runtime.py) and records what the hub
needs to know in the state directory, which :func:`configure` reads.
"""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

from hub.audit import configure_audit
from hub.auth import configure_auth
from hub.classroom import configure_class_home
from hub.courses import configure_courses, course_specs
from hub.formgrader import configure_formgraders
from hub.preferences import configure_language
from hub.services import configure_services
from hub.spawner import configure_spawner
from hub.staff_home import configure_staff_home
from hub.state import proxy_token, read_runtime
from hub.tls import configure_tls
from onelab.settings import Settings

HERE = Path(__file__).resolve().parent


def configure_hub(c: Config, settings: Settings, gateway: str) -> None:
    state = settings.state_dir
    c.JupyterHub.bind_url = settings.public_url
    # The hub's API listens on the learner network's gateway: containers reach it there and
    # nowhere else on the host.
    c.JupyterHub.hub_bind_url = f"http://{gateway}:{settings.hub.hub_port}"
    c.JupyterHub.hub_connect_url = f"http://{gateway}:{settings.hub.hub_port}"
    c.JupyterHub.db_url = settings.db_url
    c.JupyterHub.upgrade_db = True
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.log_level = settings.hub.log_level
    # A hub restart must not touch learners: servers keep running, and the proxy is ours.
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = False
    c.JupyterHub.last_activity_interval = 60
    # OneLab's pages (hub/templates extend JupyterHub's, Korean first) and its logo.
    c.JupyterHub.template_paths = [str(HERE / "templates")]
    c.JupyterHub.logo_file = str(HERE / "static" / "onelab-logo.svg")


def configure_proxy(c: Config, settings: Settings) -> None:
    # supervisord runs it (hub/supervise.py), so it outlives hub restarts; the hub puts the
    # routes back when it restarts (hub/proxy.py)
    c.JupyterHub.proxy_class = "hub.proxy.SupervisedProxy"
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.hub.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = proxy_token(settings.state_dir)


def configure(c: Config, settings: Settings) -> None:
    """Only sets values: the network, the secrets and the ports were prepared by `onelab up`
    (hub/runtime.py), which wrote what the hub needs to know into the state directory."""
    runtime = read_runtime(settings.state_dir)
    gateway = runtime["gateway"]
    courses = course_specs(settings)
    configure_hub(c, settings, gateway)
    configure_proxy(c, settings)
    configure_tls(c, settings)
    configure_auth(c, settings)
    configure_audit(c, settings)
    configure_language(c, settings)
    configure_class_home(c, settings)
    configure_staff_home(c, settings)
    configure_spawner(c, settings)
    configure_services(c, settings)
    configure_courses(c, settings, gateway)
    configure_formgraders(c, settings, courses, runtime["formgrader_ports"])

"""The hub's view of configurable-http-proxy, which supervisord runs on its own
(hub/supervise.py): when the proxy comes back after a crash, its routing table is empty, and
every learner would be lost until the hub next compared routes (its last-activity round,
once a minute). So the hub looks every few seconds and, when the proxy no longer knows the
hub's own route, puts every route back at once.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.proxy import ConfigurableHTTPProxy
from tornado.ioloop import PeriodicCallback
from traitlets import Float


class SupervisedProxy(ConfigurableHTTPProxy):
    """JupyterHub's CHP client, for a proxy that someone else restarts."""

    keep_routes_interval = Float(
        3.0, config=True,
        help="Seconds between checks that the proxy still holds the hub's routes.")

    _keeper: PeriodicCallback | None = None

    async def check_routes(self, user_dict: Any, service_dict: Any,
                           routes: Any = None) -> None:
        # The hub calls this once it has started: the loop runs, so the watch can begin.
        if self._keeper is None and self.keep_routes_interval > 0:
            self._keeper = PeriodicCallback(self._keep_routes,
                                            1000 * self.keep_routes_interval)
            self._keeper.start()
        await super().check_routes(user_dict, service_dict, routes)

    async def _keep_routes(self) -> None:
        try:
            routes = await self.get_all_routes()
        except Exception as e:  # noqa: BLE001 - the proxy is down; supervisord brings it back
            self.log.debug("The proxy does not answer yet: %s", e)
            return
        hub_route = self.app.hub.routespec
        if hub_route in routes:
            return
        self.log.warning("The proxy lost its routes (restarted?): putting all %s back",
                         len(self.app.users))
        await super().check_routes(self.app.users, self.app._service_map, routes)

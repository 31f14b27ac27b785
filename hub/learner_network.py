"""The learner network, for either backend: learners' servers and the formgraders join it, and
the hub's API listens on its gateway (the only address on the host learners may reach)."""

from __future__ import annotations

from images.table import learner_image
from onelab import dockerdoor
from onelab.settings import Settings


def ensure_learner_network(settings: Settings) -> str:
    """Create the learner network if missing; its gateway address. On Docker, a bridge with
    inter-container traffic off; on a swarm, a swarm-scoped bridge with the same options
    (dockerdoor.ensure_swarm_network), which needs this Engine to be a swarm manager."""
    s = settings.spawner
    if s.backend == "swarm":
        dockerdoor.require_swarm_manager()
        return dockerdoor.ensure_swarm_network(s.network, internal=s.network_internal,
                                               subnet=s.swarm_subnet,
                                               anchor_image=learner_image(settings))
    return dockerdoor.ensure_network(s.network, internal=s.network_internal)

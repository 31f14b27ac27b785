"""GPUs for learners (issue #14, docs/gpu.md): the host's devices (:mod:`hub.gpu.inventory`),
how a course shares them (:mod:`hub.gpu.policy`) and who holds which, kept in the hub's
database so that concurrent spawns and hub restarts never hand one out twice
(:mod:`hub.gpu.claims`). Plain synchronous code over SQLAlchemy and one subprocess; nothing
here talks to Docker."""

"""Names every runtime module shares: Ray resources, actor names, namespaces' conventions.

Kept apart so that the registry, the warm pool, the session worker and the stage hosts can all
refer to each other's names without importing each other.
"""

from __future__ import annotations

SESSION_RESOURCE = "voice_session"  # one unit per session worker: a node's cap on its calls
HEAD_RESOURCE = "node:__internal_head__"  # Ray's marker resource of the head node
REGISTRY_NAME = "voice_registry"  # the one detached actor that admits and knows sessions
WORKER_PREFIX = "worker:"  # session workers: `worker:<id>`; their stage actors `worker:<id>/stt`
STAGE_HOST_PREFIX = "stage-host:"  # node-shared stage hosts: `stage-host:<kind>:<node>:<n>`

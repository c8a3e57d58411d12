"""A call's websocket media: the relay (client frames ⇄ session), the session ports it talks
to (a remote actor, or the runtime in this process), the socket adapters, and a worker's own
media server."""

from actors.media.ports import ActorPort, LocalPort, SessionPort
from actors.media.relay import CLOSE_NORMAL, CLOSE_POLICY, CLOSE_SESSION_ERROR, RelayLimits, relay
from actors.media.server import MediaServer, parse_port_range
from actors.media.sockets import ClientLeft, MediaSocket, StarletteSocket, WebsocketsSocket

__all__ = [
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_SESSION_ERROR",
    "ActorPort",
    "ClientLeft",
    "LocalPort",
    "MediaServer",
    "MediaSocket",
    "RelayLimits",
    "SessionPort",
    "StarletteSocket",
    "WebsocketsSocket",
    "parse_port_range",
    "relay",
]

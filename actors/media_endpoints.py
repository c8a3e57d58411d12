"""Where a new session's media is served, as the create answer tells the client.

- websocket, natively: by the session's own process (`media.url` on its node), with the Serve
  port's route as `media.fallback_url`; a provider's wire format, its bot upstream or an
  operator's public media host keep the Serve port's route;
- webrtc: the SDP offer URL on the ingress, with the STUN/TURN servers.
"""

from __future__ import annotations

from typing import Any

from backend.iface import Config, SessionConfig
from providers.backend import BackendProvider
from providers.wire import SessionMedia


def direct_media(
    provider: BackendProvider,
    config: Config,
    sc: SessionConfig,
    session_id: str,
    media: Any,
    media_info: dict[str, Any],
    media_base_url: str,
) -> dict[str, Any] | None:
    """What the session needs to serve its websocket itself, when it can: our own native
    websocket protocol, at the URL this backend chose (an operator's public media host, a
    provider's wire format or its bot upstream stay on the Serve port)."""
    ours = f"{media_base_url}/v1/sessions/{session_id}/audio"
    native = (
        provider.wire_codec(_media_of(session_id, sc)) is None
        and type(provider).media_upstream is BackendProvider.media_upstream
    )
    if not (
        config.media_direct
        and sc.transport == "websocket"
        and media.upstream_url is None
        and media_info.get("url") == ours
        and native
    ):
        return None
    return {
        "port_range": config.media_port_range,
        "token": {k: media_info.get(k) for k in ("token", "token_expires_at")},
        "limits": {
            "max_frame_bytes": config.max_frame_bytes,
            "output_bytes_per_s": 2 * int(sc.output_sample_rate_hz),
            "stall_timeout_s": config.client_stall_timeout,
        },
    }


def webrtc_media(
    media: dict[str, Any], session_id: str, media_base_url: str, options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A webrtc session's media endpoint is its SDP offer URL (the provider may name its own
    signalling route, `offer_path`); the client also needs the STUN/TURN servers. Returns
    (media info for the client, options for the session's transport)."""
    ws_url, suffix = str(media.get("url") or ""), f"/v1/sessions/{session_id}/audio"
    base = ws_url.removesuffix(suffix) if ws_url.endswith(suffix) else media_base_url
    base = base.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    ice_servers = list(options.get("ice_servers") or [])
    info = {
        **media,
        "url": f"{base}/v1/sessions/{session_id}/{options.get('offer_path') or 'webrtc/offer'}",
        "ice_servers": ice_servers,
    }
    return info, {"ice_servers": ice_servers, "host_addresses": options.get("host_addresses")}


def _media_of(session_id: str, sc: SessionConfig) -> SessionMedia:
    return SessionMedia(
        session_id=session_id,
        user_id=sc.user_id,
        sample_rate_hz=sc.sample_rate_hz,
        output_sample_rate_hz=sc.output_sample_rate_hz,
    )

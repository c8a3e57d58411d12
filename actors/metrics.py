"""Every Ray metric of the backend, defined here (Prometheus through the Ray dashboard; Ray adds
the `ray_` prefix): per-turn figures when `Config.enable_metrics` (the same numbers as each turn's
`metrics` event and trace), and the ingress/supervisor figures (`backend_*`, the seed's
`backend.requests.total` … with dots as underscores). Every `backend_*` series carries a
`provider` tag: the backend provider of the process that records it (`set_provider`)."""

from __future__ import annotations

from functools import cache
from typing import Any

from ray.util.metrics import Counter, Gauge, Histogram

from pipelines.turn_metrics import TurnTimings

_BOUNDARIES_S = [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]
_STAGES = {  # metric stage tag → field of the `metrics` event (milliseconds)
    "end_of_turn": "end_of_turn_delay_ms",
    "stt_final": "stt_final_ms",
    "agent_first_token": "agent_ms",
    "tts_first_byte": "tts_first_audio_ms",
    "response": "response_ms",
    "voice_to_voice": "voice_to_voice_ms",
}
_provider = {"name": ""}  # this process's backend provider (one per deployment)


def set_provider(name: str) -> None:
    """Tag what this process records with its backend provider."""
    _provider["name"] = name


def _p(**tags: str) -> dict[str, str]:
    return {"provider": _provider["name"], **tags}


@cache
def _instruments() -> tuple[Histogram, Counter, Counter]:
    latency = Histogram(
        "voice_turn_latency_seconds",
        description="Latency of each stage of a voice turn",
        boundaries=_BOUNDARIES_S,
        tag_keys=("stage", "provider", "pipeline"),
    )
    turns = Counter(
        "voice_turns_total",
        description="Voice turns completed, by whether they met the latency target",
        tag_keys=("pipeline", "met_latency_target", "interrupted"),
    )
    barge_ins = Counter(
        "voice_barge_ins_total", description="Replies interrupted by the user", tag_keys=()
    )
    return latency, turns, barge_ins


def record_turn(turn: TurnTimings, latency_target_s: float, tags: dict[str, Any]) -> None:
    latency, turns, barge_ins = _instruments()
    figures = turn.as_metrics(latency_target_s)
    for stage, key in _STAGES.items():
        if figures.get(key) is not None:
            latency.observe(
                figures[key] / 1000,
                tags={"stage": stage, "provider": tags["provider"], "pipeline": tags["pipeline"]},
            )
    turns.inc(
        tags={
            "pipeline": tags["pipeline"],
            "met_latency_target": str(figures["met_latency_target"]).lower(),
            "interrupted": str(figures["interrupted"]).lower(),
        }
    )
    if figures["interrupted"]:
        barge_ins.inc()


# -- ingress and supervisor ------------------------------------------------------------------
class _Backend:
    """The `backend_*` instruments, created once per process on first use."""

    def __init__(self) -> None:
        c, g, h = Counter, Gauge, Histogram
        self.requests = c(
            "backend_requests_total",
            description="HTTP requests to the ingress",
            tag_keys=("provider", "route", "method", "status"),
        )
        self.errors = c(
            "backend_errors_total",
            description="Requests answered with an error, by error code",
            tag_keys=("provider", "route", "error_code"),
        )
        self.latency = h(
            "backend_latency_seconds",
            description="Time to answer an HTTP request (websockets excluded)",
            boundaries=_BOUNDARIES_S,
            tag_keys=("provider", "route"),
        )
        self.sessions_active = g(
            "backend_sessions_active",
            description="Sessions admitted and not yet ended",
            tag_keys=("provider",),
        )
        self.sessions_total = c(
            "backend_sessions_total",
            description="Sessions started",
            tag_keys=("provider", "pipeline", "warm"),
        )
        self.session_ends = c(
            "backend_session_ends_total",
            description="Sessions ended, by reason",
            tag_keys=("provider", "reason"),
        )
        self.rejections = c(
            "backend_admission_rejections_total",
            description="create_session refused at admission (cap, no slot, quota)",
            tag_keys=("provider", "reason", "error_code"),
        )
        self.slots_free = g(
            "backend_session_slots_free",
            description="voice_session slots a node can still give to sessions",
            tag_keys=("provider", "node"),
        )
        self.pool_size = g(
            "backend_warm_pool_size",
            description="Idle (loaded) and warming spare workers on a node",
            tag_keys=("provider", "node", "state"),
        )
        self.creation_time = h(
            "backend_session_creation_time_seconds",
            description="create_session: admission to a bound, started session actor",
            boundaries=[0.005, *_BOUNDARIES_S],
            tag_keys=("provider", "warm"),
        )
        self.throughput = c(
            "backend_throughput_bytes",
            description="Audio bytes relayed by the ingress websocket, by direction",
            tag_keys=("provider", "direction"),
        )
        self.stage_restarts = c(
            "backend_stage_restarts_total",
            description="Stage actors (stt, tts, s2s) restarted by Ray after their process died",
            tag_keys=("provider", "stage"),
        )
        self.provider_errors = c(
            "backend_provider_errors_total",
            description="Errors raised by a stage provider (STT, TTS, S2S model)",
            tag_keys=("provider", "stage", "error_code"),
        )


@cache
def backend() -> _Backend:
    return _Backend()


def http_request(route: str, method: str, status: int, seconds: float, error_code: str) -> None:
    m = backend()
    m.requests.inc(tags=_p(route=route, method=method, status=str(status)))
    m.latency.observe(seconds, tags=_p(route=route))
    if error_code:
        m.errors.inc(tags=_p(route=route, error_code=error_code))


def session_created(seconds: float, pipeline: str, warm: bool) -> None:
    m = backend()
    m.sessions_total.inc(tags=_p(pipeline=pipeline, warm=str(warm).lower()))
    m.creation_time.observe(seconds, tags=_p(warm=str(warm).lower()))


_NOT_REFUSALS = frozenset({"pipeline_error", "session_not_active", "connection_timeout"})


def admission_rejected(error_code: str, message: str) -> None:
    """The registry said no (cap, no slot, quota); its own failures are not refusals."""
    if error_code in _NOT_REFUSALS:
        return
    if "slot" in message:
        reason = "no_free_slot"
    elif error_code == "session_limit_exceeded":
        reason = "max_concurrent_sessions"
    else:  # e.g. a per-user quota
        reason = error_code
    backend().rejections.inc(tags=_p(reason=reason, error_code=error_code))


def end_reason(text: str) -> str:
    """A few fixed reasons (a Prometheus label must not carry free text)."""
    lowered = text.lower()
    for needle, reason in (
        ("left the cluster", "node_lost"),
        ("died", "actor_died"),
        ("health ping", "unresponsive"),
        ("closed by request", "closed"),
    ):
        if needle in lowered:
            return reason
    return "client_left" if lowered else "closed"


def session_ended(reason: str) -> None:
    backend().session_ends.inc(tags=_p(reason=end_reason(reason)))


def capacity(active: int, nodes: dict[str, dict[str, int]]) -> None:
    """Gauges from the registry's view (`WarmPool.summary()["nodes"]`)."""
    m = backend()
    m.sessions_active.set(active, tags=_p())
    for node, u in nodes.items():
        m.slots_free.set(u["free"], tags=_p(node=node))
        m.pool_size.set(u["idle"], tags=_p(node=node, state="idle"))
        m.pool_size.set(u["warming"], tags=_p(node=node, state="warming"))
    for node in _known_nodes - nodes.keys():  # a node that left: zero, not its last value
        m.slots_free.set(0, tags=_p(node=node))
        m.pool_size.set(0, tags=_p(node=node, state="idle"))
        m.pool_size.set(0, tags=_p(node=node, state="warming"))
    _known_nodes.clear()
    _known_nodes.update(nodes)


_known_nodes: set[str] = set()


def audio_bytes(direction: str, n: int) -> None:
    if n:
        backend().throughput.inc(n, tags=_p(direction=direction))


def stage_restarted(stage: str, provider: str) -> None:
    """Tagged with the stage's own provider (pocketsphinx, cartesia, …)."""
    backend().stage_restarts.inc(tags={"provider": provider, "stage": stage})


def provider_error(stage: str, provider: str, error_code: str) -> None:
    tags = {"provider": provider, "stage": stage, "error_code": error_code}
    backend().provider_errors.inc(tags=tags)

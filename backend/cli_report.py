"""What the CLI prints: a call's turn and latency waterfall, session tables, health (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from backend.http_client import CallResult

console = Console(highlight=False, soft_wrap=True)
err_console = Console(highlight=False, soft_wrap=True, stderr=True)

WATERFALL = [
    ("end-of-turn silence", "end_of_turn_delay_ms"),
    ("STT finalisation", "stt_final_ms"),
    ("agent (first text)", "agent_ms"),
    ("TTS first audio", "tts_first_audio_ms"),
    ("response (turn end -> audio)", "response_ms"),
    ("voice-to-voice (server)", "voice_to_voice_ms"),
]


def call_report(result: CallResult, label: str, out_path: str, sample_rate_hz: int) -> None:
    console.print(f"\nyou said   {label}")
    console.print(f"heard      {' | '.join(result.transcripts) or '(nothing recognised)'}")
    console.print(f"reply      {' | '.join(result.replies) or '(none)'}")
    for err in result.of_type("error"):
        console.print(f"[red]error      {err.get('code')}: {err.get('message')}[/red]")
    client_v2v = None
    if result.first_audio_at and result.speech_sent_at:
        client_v2v = (result.first_audio_at - result.speech_sent_at) * 1000
    for i, m in enumerate(result.metrics):
        console.print(f"\nturn {m['turn_id']} latency (ms)")
        worst = max((m.get(k) or 0 for _, k in WATERFALL[:4]), default=0) or 1
        for name, key in WATERFALL:
            value = m.get(key)
            bar = (
                "█" * int(30 * (value or 0) / worst) if key in dict(WATERFALL[:4]).values() else ""
            )
            shown = f"{value:8.1f}" if value is not None else "       -"
            console.print(f"  {name:<30} {shown}  [cyan]{bar}[/cyan]")
        if i == 0 and client_v2v is not None:  # the call's first reply audio is turn 1's
            console.print(f"  {'voice-to-voice (client)':<30} {client_v2v:8.1f}")
        latency_target(m)
    seconds = len(result.audio) / 2 / sample_rate_hz
    console.print(f"\nreply audio: {seconds:.2f} s -> {out_path}")


def latency_target(m: dict[str, Any]) -> None:
    """The target checked against what the caller hears: from the end of their speech to the first
    reply audio, the end-of-turn silence included. The server's `met_latency_target` covers only
    its response after that silence, so it is shown apart and never called "met" for the caller."""
    target = m.get("latency_target_ms")
    v2v, silence, response = (
        m.get("voice_to_voice_ms"),
        m.get("end_of_turn_delay_ms"),
        m.get("response_ms"),
    )
    if target is None:
        return
    if v2v is None:
        verdict = "not measured"
    else:
        verdict = f"{v2v:.1f} ms, " + (
            "[green]met[/green]" if v2v <= target else "[red]missed[/red]"
        )
    console.print(
        f"  latency target {target:g} ms, end of speech -> first reply audio (what the caller"
        f" hears, end-of-turn silence included): {verdict}"
    )
    if response is not None:
        within = "within" if response <= target else "over"
        console.print(
            f"  server alone, turn end -> first reply audio: {response:.1f} ms ({within} target)"
        )
    if silence is not None and silence >= target:
        console.print(
            f"  [yellow]the end-of-turn silence alone is {silence:.0f} ms: a lower"
            " min_endpointing_delay answers sooner, and cuts in on pauses sooner[/yellow]"
        )


def sessions_table(sessions: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(sessions)} session(s)")
    for col in ("session", "user", "state", "pipeline", "transport", "node", "created"):
        table.add_column(col)
    for s in sessions:
        table.add_row(
            s["session_id"][:12],
            str(s.get("user_id")),
            str(s.get("state")),
            str(s.get("pipeline_type")),
            str(s.get("transport")),
            str(s.get("node_id") or "")[:12],
            str(s.get("created_at", ""))[:19],
        )
    console.print(table)


def health_report(health: dict[str, Any]) -> None:
    colour = {"healthy": "green", "degraded": "yellow"}.get(health.get("status", ""), "red")
    console.print(f"status     [{colour}]{health.get('status')}[/{colour}]")
    details = health.get("details", {})
    cap = health.get("max_concurrent_sessions") or "no cap"
    console.print(f"sessions   {health.get('active_sessions')} of {cap}")
    for key in ("session_utilization", "unresponsive_sessions", "connection_state"):
        if key in details:
            console.print(f"{key:<22} {details[key]}")
    for reason in details.get("reasons", []):
        console.print(f"[yellow]- {reason}[/yellow]")
    for name, p in details.get("providers", {}).items():
        console.print(f"provider   {name}: {'reachable' if p.get('reachable') else 'unreachable'}")

"""The websocket relay: a client's frames ⇄ its session, over any `MediaSocket` and `SessionPort`.

Two loops per connection. Inbound, a port that `batches` (a remote session actor) gets frames
coalesced: while one push is in flight the next frames queue and go together in the following
one, so a session costs one call per frame when idle and fewer under load; a local port gets each
frame as it is read. Outbound, one long-poll at a time takes everything queued: typed audio chunks
and messages (`providers.messages`), which become binary frames and JSON text (or a codec's
messages) only here. No loop ever spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from actors import metrics
from actors.errors import as_backend_error
from actors.media.ports import SessionPort
from actors.media.sockets import CLOSE_GOING_AWAY, ClientLeft, MediaSocket
from providers.messages import AudioChunk, Closed, ErrorEvent, Message
from providers.wire import Outgoing, WireCodec

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 10.0
MAX_FRAMES_PER_CALL = 64
FAREWELL_TIMEOUT_S = 5.0  # a detached client that does not read is not waited for longer
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_SESSION_ERROR = 1011
MAX_TEXT_BYTES = 4096  # control messages are tiny JSON
_closing: set[asyncio.Future[Any]] = set()  # stalled sessions being closed (kept from GC)

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_NORMAL", "CLOSE_POLICY", "CLOSE_SESSION_ERROR"]


@dataclass(frozen=True)
class RelayLimits:
    """What one connection may cost. Inbound: frames over `max_frame_bytes` are refused with an
    error event, and at most `max_queued_frames` wait for a batching session (then the relay
    stops reading, and TCP slows the client down; a local session is pushed each frame before
    the next is read). Outbound: reply audio goes out at most `ahead_s` ahead of real time, so a
    client that does not read cannot make the relay buffer more than that; the rest waits in
    the session's bounded outbox."""

    max_frame_bytes: int = 256 * 1024
    max_queued_frames: int = 256
    output_bytes_per_s: int = 32_000  # PCM16 mono at the session's output rate
    ahead_s: float = 20.0
    # A native client streams its microphone (or sends {"type": "ping"}); one that sends
    # nothing for this long is stalled, and its session is closed with that reason.
    stall_timeout_s: float | None = None


class _Pacer:
    """Real-time pacing of reply audio: `clock` is when the audio sent so far ends playing."""

    def __init__(self, bytes_per_s: int, ahead_s: float) -> None:
        self.rate = float(max(1, bytes_per_s))
        self.ahead_s = ahead_s
        self.clock = 0.0

    def budget(self) -> int:
        now = time.monotonic()
        return int((now + self.ahead_s - max(self.clock, now)) * self.rate)

    def spent(self, n: int) -> None:
        self.clock = max(self.clock, time.monotonic()) + n / self.rate

    def refill_s(self) -> float:
        return max(0.02, self.clock - time.monotonic() - self.ahead_s + 0.02)


async def relay(
    ws: MediaSocket,
    port: SessionPort,
    codec: WireCodec | None = None,
    limits: RelayLimits | None = None,
    on_stall: Callable[[str], Awaitable[Any]] | None = None,
    detached: asyncio.Future[str] | None = None,
) -> None:
    """Run until the client leaves or the session closes; the session itself stays alive when
    the client disconnects (it may reconnect) — closing it is `DELETE /v1/sessions/{id}`.

    `codec`: another ecosystem's wire format (the session's provider picks it); None is the
    native protocol. `on_stall(reason)` closes the session of a stalled client. `detached`:
    once it has a result (a reason), the session no longer takes this connection: the client
    gets the session's last events and a `closed` event, and the websocket closes."""
    limits = limits or RelayLimits()
    stalled: list[str] = []  # the reason, once the client is found stalled
    reason = ""  # the session's close reason, also given as the websocket's
    tasks: list[asyncio.Task[Any]] = []
    stop: asyncio.Task[str] | None = None
    try:
        await port.start_media()
        inbound: asyncio.Queue[bytes] | None = None
        if port.batches:
            inbound = asyncio.Queue(maxsize=limits.max_queued_frames)
        if codec is not None:
            await _send_all(ws, codec.on_connect())
        tasks = [
            asyncio.create_task(_receive(ws, port, inbound, codec, limits, on_stall, stalled)),
            asyncio.create_task(_send(ws, port, codec, limits)),
        ]
        if inbound is not None:
            tasks.append(asyncio.create_task(_push(port, inbound)))
        if detached is not None:
            stop = asyncio.create_task(_wait(detached))
            tasks.append(stop)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t.cancelled():
                continue
            if (exc := t.exception()) is not None:
                raise exc
            reason = t.result() or reason
    except ClientLeft as gone:
        log.info("websocket client left (code %s)", gone.code)
    except Exception as exc:  # tell the client, never a stack trace
        if stalled:  # the session was closed under the send loop: say why, not what broke
            await _close(ws, CLOSE_POLICY, Closed(stalled[0]))
            return
        err = as_backend_error("websocket", exc)
        log.warning("websocket relay ended: %s", err)
        await _close(ws, CLOSE_SESSION_ERROR, ErrorEvent.of(err), err.message)
    finally:
        await cancel_all(tasks)
        if stop is not None and stop.done() and not stop.cancelled() and not ws.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(FAREWELL_TIMEOUT_S):
                    await _farewell(ws, port, codec, reason)
        # A session closed because its client stalled ends with a policy close, as it did when
        # the close reached the relay as an error (the ingress path).
        await _close(ws, CLOSE_POLICY if stalled else CLOSE_NORMAL, reason=reason)


async def _wait(detached: asyncio.Future[str]) -> str:
    return await asyncio.shield(detached)


async def _farewell(
    ws: MediaSocket, port: SessionPort, codec: WireCodec | None, reason: str
) -> None:
    """The events still queued (the session's own `closed` event among them, if it has closed;
    audio is dropped), then a `closed` event if the session sent none."""
    out: dict[str, Any] = {"items": []}
    with contextlib.suppress(Exception):
        out = await port.poll(False, True, 0.0, None)
    events: list[Message] = [m for m in out["items"] if isinstance(m, Message)]
    if not any(isinstance(e, Closed) for e in events):
        events.append(Closed(reason))
    for event in events:
        await _emit(ws, codec, event)


async def _receive(
    ws: MediaSocket,
    port: SessionPort,
    inbound: asyncio.Queue[bytes] | None,
    codec: WireCodec | None,
    limits: RelayLimits,
    on_stall: Callable[[str], Awaitable[Any]] | None = None,
    stalled: list[str] | None = None,
) -> None:
    stall_s = limits.stall_timeout_s if codec is None and on_stall is not None else None

    async def deliver(pcm: bytes) -> None:
        if inbound is not None:
            await inbound.put(pcm)  # a full queue stops reading: TCP slows the client down
            return
        await port.push_audio([pcm])  # bad frames come back as events on the outbound stream
        metrics.audio_bytes("in", len(pcm))

    while True:
        try:
            async with asyncio.timeout(stall_s):
                data = await ws.receive()
        except TimeoutError:
            assert on_stall is not None
            reason = f"client stalled: nothing received for {stall_s:g} s"
            log.warning("closing a session: %s", reason)
            if stalled is not None:
                stalled.append(reason)
            closing = asyncio.ensure_future(on_stall(reason))
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)
            await asyncio.shield(closing)  # the session's `closed` event ends the send loop
            await asyncio.Event().wait()  # the send loop finishes the connection
        limit = limits.max_frame_bytes if isinstance(data, bytes) else MAX_TEXT_BYTES
        if len(data) > limit:  # refused before it is decoded, queued or sent anywhere
            await _error(
                ws,
                f"frame too large: {len(data)} bytes; the limit is {limit} "
                "(send audio in frames of 20-100 ms)",
            )
            continue
        if codec is not None:
            decoded = codec.decode(data)
            for pcm in decoded.audio:
                await deliver(pcm)
            await _send_all(ws, decoded.replies)
            if decoded.close:  # the client ended the conversation
                return
        elif isinstance(data, bytes):
            await deliver(data)
        else:
            await _control(ws, data)


async def _error(ws: MediaSocket, message: str) -> None:
    await ws.send_text(json.dumps(ErrorEvent(code="invalid_format", message=message).to_wire()))


async def _control(ws: MediaSocket, text: str) -> None:
    """Text frames are control messages; only `{"type": "ping"}` exists so far."""
    try:
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError):
        kind = None
    if kind == "ping":
        await ws.send_text(json.dumps({"type": "pong"}))
        return
    await _error(
        ws,
        'text frames must be JSON control messages ({"type": "ping"}); '
        "send audio as binary PCM16 frames",
    )


async def _push(port: SessionPort, inbound: asyncio.Queue[bytes]) -> None:
    while True:
        frames = [await inbound.get()]
        while not inbound.empty() and len(frames) < MAX_FRAMES_PER_CALL:
            frames.append(inbound.get_nowait())
        # Errors for bad frames come back as events on the outbound stream as well.
        await port.push_audio(frames)
        metrics.audio_bytes("in", sum(len(f) for f in frames))


async def _send(
    ws: MediaSocket, port: SessionPort, codec: WireCodec | None, limits: RelayLimits
) -> str:
    """Returns the session's close reason once it has closed."""
    reason = "closed"
    pacer = _Pacer(limits.output_bytes_per_s, limits.ahead_s)
    while True:
        budget = pacer.budget()
        wait_s = POLL_TIMEOUT_S if budget > 0 else min(POLL_TIMEOUT_S, pacer.refill_s())
        out = await port.poll(True, True, wait_s, max(0, budget))
        if not out["items"] and not out["closed"] and budget <= 0:
            await asyncio.sleep(pacer.refill_s())  # audio is held back: wait for its time
        audio = [len(i.pcm16) for i in out["items"] if isinstance(i, AudioChunk)]
        metrics.audio_bytes("out", sum(audio))
        for item in out["items"]:
            if isinstance(item, AudioChunk):
                pacer.spent(len(item.pcm16))
            await _emit(ws, codec, item)
            if codec is None and isinstance(item, Closed):
                reason = item.reason or reason
        if out["closed"]:
            return reason


async def _emit(ws: MediaSocket, codec: WireCodec | None, item: AudioChunk | Message) -> None:
    if codec is not None:
        audio = isinstance(item, AudioChunk)
        await _send_all(ws, codec.encode_audio(item) if audio else codec.encode_event(item))
    elif isinstance(item, AudioChunk):
        await ws.send_bytes(item.pcm16)
    else:
        await ws.send_text(json.dumps(item.to_wire()))


async def _send_all(ws: MediaSocket, messages: list[Outgoing]) -> None:
    for m in messages:
        if isinstance(m, bytes):
            await ws.send_bytes(m)
        else:
            await ws.send_text(m)


async def _close(
    ws: MediaSocket, code: int, event: Message | None = None, reason: str = ""
) -> None:
    if ws.closed:
        return
    with contextlib.suppress(Exception):
        if event is not None:
            await ws.send_text(json.dumps(event.to_wire()))
        # A close reason is at most 123 bytes of UTF-8.
        await ws.close(code, reason.encode()[:120].decode(errors="ignore"))


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel a connection's loops and wait until they have ended."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(BaseException):
            await t

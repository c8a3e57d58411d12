"""The outbox's bounds for clients that do not keep up: a byte cap on queued audio (oldest
dropped, events kept) and the paced take that leaves audio past a budget queued, in order."""

from __future__ import annotations

from pipelines import outbox as outbox_module
from pipelines.outbox import Outbox
from providers.messages import AudioChunk, Event


def kinds(items: list) -> list[str]:
    return ["audio" if isinstance(i, AudioChunk) else "event" for i in items]


def test_queued_audio_is_capped_in_bytes_keeping_events(monkeypatch: object) -> None:
    monkeypatch.setattr(outbox_module, "MAX_AUDIO_BYTES", 1000)  # type: ignore[attr-defined]
    box = Outbox()
    box.put_event(Event("state"))
    for i in range(5):
        box.put_audio(AudioChunk(bytes([i]) * 400, 16000))
    items = list(box._items)
    audio = [i.pcm16 for i in items if isinstance(i, AudioChunk)]
    assert sum(map(len, audio)) <= 1000 and audio[-1][0] == 4  # the newest kept
    assert items[0] == Event("state")
    assert box.audio_dropped_bytes == 1200


async def test_a_budget_takes_items_in_order_up_to_the_audio_it_allows() -> None:
    box = Outbox()
    box.put_event(Event("a"))
    box.put_audio(AudioChunk(b"x" * 100, 16000))
    box.put_audio(AudioChunk(b"y" * 100, 16000))
    box.put_event(Event("b"))
    out = await box.poll(timeout_s=0.01, max_audio_bytes=150)
    assert kinds(out["items"]) == ["event", "audio"]  # "b" waits behind held audio
    out = await box.poll(timeout_s=0.01, max_audio_bytes=0)
    assert out == {"items": [], "closed": False}
    box.close()
    out = await box.poll(timeout_s=0.01, max_audio_bytes=0)
    assert out == {"items": [], "closed": False}  # held audio: not closed for this reader yet
    out = await box.poll(timeout_s=0.01, max_audio_bytes=1000)
    assert kinds(out["items"]) == ["audio", "event"] and out["closed"]
    # Without a budget, everything at once, as before.
    box2 = Outbox()
    box2.put_audio(AudioChunk(b"z" * 10_000, 16000))
    assert len((await box2.poll(timeout_s=0.01))["items"]) == 1

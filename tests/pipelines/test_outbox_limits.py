"""The outbox's bounds for clients that do not keep up: a byte cap on queued audio (oldest
dropped, events kept) and the paced take that leaves audio past a budget queued, in order."""

from __future__ import annotations

from pipelines import outbox as outbox_module
from pipelines.outbox import AUDIO, EVENT, Outbox


def test_queued_audio_is_capped_in_bytes_keeping_events(monkeypatch: object) -> None:
    monkeypatch.setattr(outbox_module, "MAX_AUDIO_BYTES", 1000)  # type: ignore[attr-defined]
    box = Outbox()
    box.put_event({"type": "state"})
    for i in range(5):
        box.put_audio(bytes([i]) * 400)
    items = list(box._items)
    audio = [p for k, p in items if k == AUDIO]
    assert sum(map(len, audio)) <= 1000 and audio[-1][0] == 4  # the newest kept
    assert items[0] == (EVENT, {"type": "state"})
    assert box.audio_dropped_bytes == 1200


async def test_a_budget_takes_items_in_order_up_to_the_audio_it_allows() -> None:
    box = Outbox()
    box.put_event({"type": "a"})
    box.put_audio(b"x" * 100)
    box.put_audio(b"y" * 100)
    box.put_event({"type": "b"})
    out = await box.poll(timeout_s=0.01, max_audio_bytes=150)
    assert [k for k, _ in out["items"]] == [EVENT, AUDIO]  # "b" waits behind held audio
    out = await box.poll(timeout_s=0.01, max_audio_bytes=0)
    assert out == {"items": [], "closed": False}
    box.close()
    out = await box.poll(timeout_s=0.01, max_audio_bytes=0)
    assert out == {"items": [], "closed": False}  # held audio: not closed for this reader yet
    out = await box.poll(timeout_s=0.01, max_audio_bytes=1000)
    assert [k for k, _ in out["items"]] == [AUDIO, EVENT] and out["closed"]
    # Without a budget, everything at once, as before.
    box2 = Outbox()
    box2.put_audio(b"z" * 10_000)
    assert len((await box2.poll(timeout_s=0.01))["items"]) == 1

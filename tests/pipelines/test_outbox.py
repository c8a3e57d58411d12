import asyncio

import pytest

from pipelines.outbox import Outbox
from providers.messages import AudioChunk, Event


async def test_poll_keeps_order_and_filters_kinds() -> None:
    box = Outbox()
    box.put_event(Event("a"))
    box.put_audio(AudioChunk(b"\x00\x00", 16000))
    box.put_event(Event("b"))
    audio_only = await box.poll(events=False, timeout_s=0.1)
    assert audio_only["items"] == [AudioChunk(b"\x00\x00", 16000)]
    rest = await box.poll(timeout_s=0.1)
    assert [m.type for m in rest["items"]] == ["a", "b"]


async def test_poll_waits_without_spinning_and_wakes_on_put() -> None:
    box = Outbox()
    waiter = asyncio.create_task(box.poll(timeout_s=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    box.put_event(Event("x"))
    out = await asyncio.wait_for(waiter, 1)
    assert out["items"][0].to_wire() == {"type": "x"}


async def test_poll_times_out_empty_and_reports_close_after_drain() -> None:
    box = Outbox()
    assert (await box.poll(timeout_s=0.05)) == {"items": [], "closed": False}
    box.put_event(Event("last"))
    box.close()
    first = await box.poll(timeout_s=0.05)
    assert first["items"] and first["closed"]


async def test_clear_audio_keeps_events() -> None:
    box = Outbox()
    box.put_audio(AudioChunk(b"\x01\x00", 16000))
    box.put_event(Event("e"))
    assert box.clear_audio() == 1
    assert (await box.poll(timeout_s=0.1))["items"] == [Event("e")]


def test_an_untyped_event_is_refused() -> None:
    with pytest.raises(TypeError):
        Outbox().put_event({"type": "state"})  # type: ignore[arg-type]

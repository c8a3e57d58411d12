import asyncio

from pipelines.outbox import Outbox


async def test_poll_keeps_order_and_filters_kinds() -> None:
    box = Outbox()
    box.put_event({"type": "a"})
    box.put_audio(b"\x00\x00")
    box.put_event({"type": "b"})
    audio_only = await box.poll(events=False, timeout_s=0.1)
    assert [k for k, _ in audio_only["items"]] == ["audio"]
    rest = await box.poll(timeout_s=0.1)
    assert [p["type"] for _, p in rest["items"]] == ["a", "b"]


async def test_poll_waits_without_spinning_and_wakes_on_put() -> None:
    box = Outbox()
    waiter = asyncio.create_task(box.poll(timeout_s=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    box.put_event({"type": "x"})
    out = await asyncio.wait_for(waiter, 1)
    assert out["items"][0][1] == {"type": "x"}


async def test_poll_times_out_empty_and_reports_close_after_drain() -> None:
    box = Outbox()
    assert (await box.poll(timeout_s=0.05)) == {"items": [], "closed": False}
    box.put_event({"type": "last"})
    box.close()
    first = await box.poll(timeout_s=0.05)
    assert first["items"] and first["closed"]


async def test_clear_audio_keeps_events() -> None:
    box = Outbox()
    box.put_audio(b"\x01\x00")
    box.put_event({"type": "e"})
    assert box.clear_audio() == 1
    assert [k for k, _ in (await box.poll(timeout_s=0.1))["items"]] == ["event"]

"""Paced reply audio: never far ahead of the listener, silenced at once, cut where it was heard."""

from __future__ import annotations

import asyncio

import pytest

from pipelines.outbox import Outbox
from pipelines.playout import Playout, Segment, heard_text
from providers.messages import AudioChunk, Event

RATE = 16000


@pytest.mark.parametrize(
    ("heard_s", "expected"),
    [
        (0.0, ""),
        (0.5, "one two"),  # half of the first sentence's words
        (1.0, "one two three four"),
        (1.5, "one two three four five"),  # a quarter of "five six seven eight"
        (9.9, "one two three four five six seven eight"),
    ],
)
def test_heard_text_cuts_at_the_playout_position(heard_s: float, expected: str) -> None:
    segments = [Segment("one two three four", 0.0, 1.0), Segment("five six seven eight", 1.0, 3.0)]
    assert heard_text(segments, heard_s) == expected


def audio_s(items: list[object]) -> float:
    return sum(len(i.pcm16) for i in items if isinstance(i, AudioChunk)) / 2 / RATE


async def test_audio_is_released_at_real_time_plus_a_small_lead() -> None:
    box = Outbox()
    playout = Playout(box, RATE, lead_s=0.2)
    player = asyncio.create_task(playout.play(bytes(RATE * 2 * 3)))  # 3 s of audio
    await asyncio.sleep(0.3)
    queued = audio_s((await box.poll(timeout_s=0.1))["items"])
    assert 0.2 <= queued < 1.5, f"{queued:.2f} s released after 0.3 s: not paced"
    playout.interrupt()
    await asyncio.wait_for(player, 1.0)


async def test_interrupt_drops_queued_audio_and_releases_nothing_more() -> None:
    box = Outbox()
    playout = Playout(box, RATE, lead_s=0.5)
    playout.begin_segment("a long sentence that will not be heard to its end")
    player = asyncio.create_task(playout.play(bytes(RATE * 2 * 3)))
    await asyncio.sleep(0.2)
    box.put_event(Event("keep me"))
    heard = playout.interrupt()
    assert 0.0 < heard < 1.0
    await asyncio.wait_for(player, 1.0)
    items = (await box.poll(timeout_s=0.2))["items"]
    assert items == [Event("keep me")], "queued audio must be gone, events kept"
    assert playout.heard_text_at(heard) != "a long sentence that will not be heard to its end"

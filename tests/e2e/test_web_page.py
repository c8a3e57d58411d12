"""The web page at `/`, in a real headless Chromium whose fake microphone says "hello world":
press Talk, converse over WebRTC (or the websocket), read the captions, the latency waterfall,
the health box, and check that reply audio arrived on the peer connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from backend.http_client import HttpClient
from backend.wav import write_wav
from tests.conftest import wait_for
from tests.e2e.browser import Browser

pytestmark = pytest.mark.ray

# WebRTC stats of the reply track, once decoded reply audio carries energy (not just silence).
INBOUND_AUDIO_WITH_ENERGY = """(async () => {
  const out = {};
  (await window.voice.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio")
      Object.assign(out, {bytes: s.bytesReceived, packets: s.packetsReceived,
                          energy: s.totalAudioEnergy});
  });
  return out.energy > 0 ? out : null;
})()"""


def speech_wav(tmp_path: Path, hello_16k: bytes) -> Path:
    """The phrase then 8 s of silence: Chromium loops the file, the silence ends the turn."""
    pcm = np.frombuffer(hello_16k, dtype="<i2")
    pcm = np.concatenate((pcm, np.zeros(16000 * 8, dtype=np.int16)))
    path = tmp_path / "speech.wav"
    write_wav(path, soxr.resample(pcm, 16000, 48000).astype("<i2").tobytes(), 48000)
    return path


def text_of(selector: str) -> str:
    return f"Array.from(document.querySelectorAll({selector!r})).map(e => e.textContent).join('|')"


async def talk_through_the_page(
    base_url: str, tmp_path: Path, hello_16k: bytes, transport: str
) -> tuple[Browser, dict[str, Any]]:
    browser = Browser(tmp_path / "profile", speech_wav(tmp_path, hello_16k))
    await browser.start()
    await browser.goto(base_url + "/")
    health = await browser.wait_for(
        "document.getElementById('health-sessions').textContent.includes('available') && "
        "document.getElementById('health-status').textContent"
    )
    await browser.evaluate(f"document.getElementById('transport').value = {transport!r}")
    await browser.evaluate("document.getElementById('talk').click()")
    used = await browser.wait_for(
        "(t => t !== '—' && t)(document.getElementById('transport-used').textContent)", 30
    )
    user = await browser.wait_for(
        f"(t => t.toLowerCase().includes('hello') && t)({text_of('.caption.user')})", 60
    )
    agent = await browser.wait_for(
        # The fake microphone loops the file and may start mid-phrase: wait for the answer
        # to the turn that heard "hello", not to whatever was heard first.
        f"(t => t.includes('You said: hello') && t)({text_of('.caption.agent')})",
        60,
    )
    bars = await browser.wait_for(f"{text_of('#waterfall .turn')}", 30)
    state = await browser.evaluate("document.getElementById('state').textContent")
    return browser, {
        "health": health,
        "used": used,
        "user": user,
        "agent": agent,
        "bars": bars,
        "state": state,
    }


async def test_talk_to_the_agent_over_webrtc_in_a_browser(
    rtc_backend: Any, base_url: str, tmp_path: Path, hello_16k: bytes
) -> None:
    browser, seen = await talk_through_the_page(base_url, tmp_path, hello_16k, "webrtc")
    try:
        assert seen["health"] in ("healthy", "degraded")
        assert seen["used"] == "webrtc"
        assert "hello" in seen["user"].lower()
        assert "You said: hello" in seen["agent"]
        assert "voice→voice" in seen["bars"] and "ms" in seen["bars"]
        assert seen["state"] in ("listening", "processing", "speaking")
        # Reply audio arrived on the peer connection and was not silence.
        stats = await browser.wait_for(INBOUND_AUDIO_WITH_ENERGY, 30)
        assert stats["bytes"] > 0 and stats["packets"] > 0
        await browser.screenshot(tmp_path / "page-webrtc.png")
        assert (tmp_path / "page-webrtc.png").stat().st_size > 10_000
        session_id = await browser.evaluate("window.voice.session.session_id")
        await browser.evaluate("document.getElementById('hangup').click()")
        async with HttpClient(base_url) as client:

            async def gone() -> bool:
                return session_id not in {s["session_id"] for s in await client.list_sessions()}

            assert await wait_for(gone, timeout_s=30), "hanging up ends the session"
    finally:
        await browser.close()


async def test_the_page_talks_over_the_websocket_too(
    backend: Any, base_url: str, tmp_path: Path, hello_16k: bytes
) -> None:
    browser, seen = await talk_through_the_page(base_url, tmp_path, hello_16k, "websocket")
    try:
        assert seen["used"] == "websocket"
        assert "hello" in seen["user"].lower() and "You said: hello" in seen["agent"]
        await browser.screenshot(tmp_path / "page-websocket.png")
        await browser.evaluate("document.getElementById('hangup').click()")
    finally:
        await browser.close()

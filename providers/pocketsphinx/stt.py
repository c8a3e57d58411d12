"""PocketSphinx 5 speech recognition, streaming, with the wheel's bundled US English model.

Audio is decoded while the user speaks, so only `end_utt` is left when speech ends. The decoder
takes ~0.4 s to load, so one is kept per instance and reused; PocketSphinx has one utterance
in flight per decoder, so a new `stream()` abandons any unfinished one.

The acoustic model is trained with per-utterance (batch) cepstral mean normalisation, and live
mode starts from a fixed guess that is far from many voices: decoded that way, "hello world" from
espeak comes out as "oh world". So the start of each utterance is held back, its cepstral mean
measured (a cheap feature-only pass) over `cmn_window_s` of audio from `cmn_lead_s` before the
first loud 10 ms frame, and set; then it is decoded, streaming from there on. An utterance too
short for the window is decoded whole by `finish`. The estimate swings with the share of silence
in what it measures, and the VAD's pre-roll puts 0.1–0.3 s of it before the words: anchored to
the onset, the same words give the same estimate. On 85 Opus round trips of the tests' phrases
and 10 LiveKit calls, "hello world" went from 52/55 right (the mean over whatever the first
128 ms pushes past 0.8 s held) to 55/55, "stop please" from 17/30 to 20/30 (the misses are
"stop it please"). Of 20 more LiveKit calls' "hello world"s, 20 were right before and 19 after:
on real calls the gain is within the noise; what is sure is that the same audio gives the same
words however it was cut. The window (0.8 s by default) is a trade: longer ones leave the decoder a
longer backlog to catch up on at the end of speech (decoding runs at ~0.3× real time here), which
the pipeline's early finish can no longer hide within the endpointing delay.

Digital silence (exact zeros, as synthesized or gated audio has) sends the front end's log
energies to their floor and the decoder loses word onsets ("hello world" → "oh we're ill"). A
microphone never gives exact zeros, so a faint, seeded noise floor (`noise_floor`, ~-60 dBFS) is
added to what the decoder sees: with it, espeak-ng's "hello world" is recognised exactly.

The binding holds the GIL while it decodes, so audio goes in in `_STEP_BYTES` pieces from a
worker thread: the event loop gets a turn between pieces (~15 ms each) instead of waiting for a
whole push.
"""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np
from pocketsphinx import Decoder

from backend.errors import BackendError, ErrorCode
from providers.base import STT, SttCapabilities, SttStream

_RATE_HZ = 16000
_STEP_BYTES = _RATE_HZ // 10 * 2  # 100 ms per decoder call
_ONSET_FRAME = _RATE_HZ // 100  # samples: speech onset is found to the nearest 10 ms
_ONSET_RMS = 300.0  # a 10 ms frame this loud is speech (~-40 dBFS; the noise floor is ~-60)


class PocketsphinxStream(SttStream):
    """One utterance on the shared decoder; the decoder calls happen in `PocketsphinxSTT`."""

    def __init__(self, owner: PocketsphinxSTT) -> None:
        self._owner = owner
        self.pending = bytearray()  # audio held back until the cepstral mean is known
        self.scanned = 0  # samples of `pending` searched for the speech onset
        self.onset: int | None = None  # sample at which speech starts in `pending`
        self.started = False  # the decoder has an utterance open for this stream
        self.result: str | None = None
        self.rng = np.random.default_rng(0)  # seeded: the same audio gives the same transcript

    async def push(self, pcm16: bytes) -> None:
        if len(pcm16) % 2:
            raise BackendError(
                "pocketsphinx.push",
                ErrorCode.INVALID_FORMAT,
                f"PCM16 needs an even number of bytes, got {len(pcm16)}",
            )
        if pcm16:
            await asyncio.to_thread(self._owner._feed, self, bytes(pcm16))

    async def finish(self) -> str:
        if self.result is None:
            self.result = await asyncio.to_thread(self._owner._finish, self)
        return self.result

    async def aclose(self) -> None:
        await asyncio.to_thread(self._owner._drop, self)


class PocketsphinxSTT(STT):
    name = "pocketsphinx"
    placement = "node"  # ~90 MB of model per decoder: shared by a node's calls, not one each
    cpu_cores_per_call = 0.25  # a talking call's decode share (benchmarks/voice_latency.py)
    capabilities = SttCapabilities(streaming=True, sample_rate_hz=_RATE_HZ)

    def __init__(
        self,
        model: str | None = None,
        cmn_window_s: float = 0.8,
        cmn_lead_s: float = 0.1,
        noise_floor: float = 30.0,
    ) -> None:
        """`model`: an acoustic model directory (None = bundled en-us); `cmn_window_s`: audio
        used to measure each utterance's cepstral mean before decoding starts (0 = live CMN),
        from `cmn_lead_s` before the speech onset; `noise_floor`: standard deviation of the
        noise added to the input (0 = none)."""
        op = "pocketsphinx.init"
        options: dict[str, object] = {"samprate": _RATE_HZ, "loglevel": "FATAL"}
        if model is not None:
            if not os.path.isdir(model):
                raise BackendError(
                    op,
                    ErrorCode.INVALID_CONFIG,
                    f"pocketsphinx model {model!r} is not a directory",
                    field="stt_model",
                )
            options["hmm"] = model
        try:
            self._decoder = Decoder(**options)
        except (RuntimeError, ValueError) as exc:
            raise BackendError(
                op, ErrorCode.INVALID_CONFIG, f"cannot load pocketsphinx: {exc}", field="stt_model"
            ) from exc
        self._window = max(0, int(cmn_window_s * _RATE_HZ))  # samples
        self._lead = max(0, int(cmn_lead_s * _RATE_HZ))
        self._noise_floor = noise_floor
        self._lock = threading.Lock()  # decoder calls come from worker threads
        self._current: PocketsphinxStream | None = None  # the stream allowed to use the decoder
        self._open: PocketsphinxStream | None = None  # whose utterance the decoder has open

    def stream(self) -> SttStream:
        self._current = PocketsphinxStream(self)  # the previous one, if any, is abandoned
        return self._current

    # -- worker-thread side ------------------------------------------------------------------
    def _check(self, stream: PocketsphinxStream, op: str) -> None:
        if stream is not self._current:
            raise BackendError(
                op,
                ErrorCode.PIPELINE_ERROR,
                "this utterance was closed or replaced by a newer stream()",
            )

    def _feed(self, stream: PocketsphinxStream, pcm16: bytes) -> None:
        with self._lock:
            self._check(stream, "pocketsphinx.push")
            pcm16 = self._with_noise_floor(stream, pcm16)
            if stream.started:
                self._decode(pcm16)
                return
            stream.pending += pcm16
            begin = self._window_begin(stream)
            held = len(stream.pending) // 2
            # No onset within two windows (a noisy line, say): measure from the start.
            if (begin is not None and held >= begin + self._window) or held >= 2 * self._window:
                self._start(stream)

    def _window_begin(self, stream: PocketsphinxStream) -> int | None:
        """Where the cepstral mean window starts: `cmn_lead_s` before the first 10 ms frame loud
        enough to be speech (None while none has come). The VAD's pre-roll puts a varying
        amount of silence before the words; a fixed amount makes the estimate the same."""
        if stream.onset is None:
            samples = np.frombuffer(stream.pending, dtype="<i2")
            end = samples.size // _ONSET_FRAME * _ONSET_FRAME
            frames = samples[stream.scanned : end].astype(np.float32).reshape(-1, _ONSET_FRAME)
            loud = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > _ONSET_RMS)
            if loud.size:
                stream.onset = stream.scanned + int(loud[0]) * _ONSET_FRAME
            stream.scanned = end
        return None if stream.onset is None else max(0, stream.onset - self._lead)

    def _finish(self, stream: PocketsphinxStream) -> str:
        with self._lock:
            self._check(stream, "pocketsphinx.finish")
            self._current = None
            if not stream.started:
                if not stream.pending:
                    return ""
                self._start(stream)
            self._decoder.end_utt()
            self._open = None
            hyp = self._decoder.hyp()
            return hyp.hypstr if hyp is not None else ""

    def _drop(self, stream: PocketsphinxStream) -> None:
        with self._lock:
            if self._current is stream:
                self._current = None
            if self._open is stream:
                self._decoder.end_utt()
                self._open = None
            stream.pending.clear()

    def _with_noise_floor(self, stream: PocketsphinxStream, pcm16: bytes) -> bytes:
        if not self._noise_floor:
            return pcm16
        samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float32)
        samples += stream.rng.normal(0.0, self._noise_floor, samples.size).astype(np.float32)
        return np.clip(samples, -32768, 32767).astype("<i2").tobytes()

    def _start(self, stream: PocketsphinxStream) -> None:
        """Open the decoder's utterance for `stream` and decode what it held back."""
        if self._open is not None:  # an abandoned utterance: end it, drop its result
            self._decoder.end_utt()
            self._open = None
        begin = (self._window_begin(stream) or 0) * 2
        audio = bytes(stream.pending)
        stream.pending.clear()
        # The decoder's mean estimate is a running one, slow to leave the last utterance's:
        # one noisy utterance garbles the next ("hello world" → "oh world"). Fresh feature
        # state (microseconds) makes each utterance's estimate its own.
        self._decoder.reinit_feat()
        if self._window:
            # Exactly the window, however the audio was cut into pushes, from a fixed lead
            # before the words: the estimate swings with the share of silence in it, and "hello
            # world" through LiveKit was heard as "so where else" or "so we're told".
            self._decoder.start_utt()
            self._decoder.process_raw(audio[begin : begin + self._window * 2], True, True)
            cmn = self._decoder.get_cmn(False)
            self._decoder.end_utt()
            self._decoder.set_cmn(cmn)
        self._decoder.start_utt()
        self._open = stream
        stream.started = True
        self._decode(audio)

    def _decode(self, pcm16: bytes) -> None:
        for i in range(0, len(pcm16), _STEP_BYTES):
            self._decoder.process_raw(pcm16[i : i + _STEP_BYTES], False, False)

"""PocketSphinx 5 speech recognition, streaming, with the wheel's bundled US English model.

Audio is decoded while the user speaks, so only `end_utt` is left when speech ends; one decoder
(~0.4 s to load) is kept per instance, one utterance in flight. Each utterance's cepstral mean is
measured over a fixed window anchored to the speech onset (the model expects batch CMN; live CMN
heard espeak's "hello world" as "oh world"), and a faint seeded noise floor keeps digital silence
from flooring the front end's energies. The search settings (`DECODER_OPTIONS`) were picked from
a CPU-vs-accuracy sweep. Measurements and reasons: benchmarks/README.md ("STT settings").

The binding holds the GIL while it decodes, so audio goes in in `_STEP_BYTES` pieces from a
worker thread: the event loop gets a turn between pieces (~15 ms each).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pocketsphinx import Decoder, get_model_path

from backend.errors import BackendError, ErrorCode
from providers.base import STT, SttCapabilities, SttStream

_RATE_HZ = 16000
_STEP_BYTES = _RATE_HZ // 10 * 2  # 100 ms per decoder call
_ONSET_FRAME = _RATE_HZ // 100  # samples: speech onset is found to the nearest 10 ms
_ONSET_RMS = 300.0  # a 10 ms frame this loud is speech (~-40 dBFS; the noise floor is ~-60)
# Search settings over pocketsphinx's own defaults, picked with benchmarks/stt_settings.py: the
# bundled dictionary cut to the language model's 20,000 likeliest words (`prune_dict.py`) costs
# ~30% less CPU per speech-second and hears the phrase set better (fewer rare look-alikes);
# narrower beams, -ds, -topn, -maxhmmpf or no fwdflat pass saved nothing or lost words.
DECODER_OPTIONS: dict[str, object] = {"dict": str(Path(__file__).with_name("en-us-20k.dict"))}
# espeak-ng's "hello world" at 16 kHz, decoded once by `warm_up`: whatever is set up lazily on a
# first decode is paid before the first call (in-process it was ≤ 3 % of a decode).
_WARM_UP_CLIP = Path(__file__).with_name("warm_up.pcm")
_GRAMMAR = "phrases"
_WORD = re.compile(r"[a-z']+")


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
        decoder_options: Mapping[str, object] | None = None,
        phrases: Sequence[str] | None = None,
        words: Sequence[str] = (),
    ) -> None:
        """`model`: an acoustic model directory (None = bundled en-us); `cmn_window_s`: audio
        used to measure each utterance's cepstral mean before decoding starts (0 = live CMN),
        from `cmn_lead_s` before the speech onset; `noise_floor`: standard deviation of the
        noise added to the input (0 = none); `decoder_options`: pocketsphinx settings over
        `DECODER_OPTIONS` (e.g. {"beam": 1e-40}); `phrases`: when the agent only expects these
        (a menu, yes/no), the decoder hears nothing else: a grammar of them replaces the
        language model, cheaper and more accurate on them; `words`: words the agent expects
        beyond the default 20,000-word vocabulary ("reschedule" ranks 21,838th), pronounced as
        in the full bundled dictionary (`decoder_options={"dict": ...}` replaces it whole)."""
        op = "pocketsphinx.init"
        options: dict[str, object] = {
            "samprate": _RATE_HZ,
            "loglevel": "FATAL",
            **DECODER_OPTIONS,
            **(decoder_options or {}),
        }
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
        except (KeyError, RuntimeError, ValueError) as exc:
            raise BackendError(
                op, ErrorCode.INVALID_CONFIG, f"cannot load pocketsphinx: {exc}", field="stt_model"
            ) from exc
        if words:
            self._add_words(words)
        if phrases:
            self._use_grammar(phrases)
        self._window = max(0, int(cmn_window_s * _RATE_HZ))  # samples
        self._lead = max(0, int(cmn_lead_s * _RATE_HZ))
        self._noise_floor = noise_floor
        self._lock = threading.Lock()  # decoder calls come from worker threads
        self._current: PocketsphinxStream | None = None  # the stream allowed to use the decoder
        self._open: PocketsphinxStream | None = None  # whose utterance the decoder has open

    def _add_words(self, words: Sequence[str], field: str = "words") -> None:
        wanted = {w.strip().lower() for w in words if w.strip()}
        missing = {w for w in wanted if self._decoder.lookup_word(w) is None}
        found: list[tuple[str, str]] = []
        if missing:
            with open(os.path.join(get_model_path("en-us"), "cmudict-en-us.dict")) as full:
                for line in full:
                    word, _, phones = line.strip().partition(" ")
                    if word.split("(")[0] in missing:
                        found.append((word, phones))
        unknown = missing - {w.split("(")[0] for w, _ in found}
        if unknown:
            raise BackendError(
                "pocketsphinx.init",
                ErrorCode.INVALID_CONFIG,
                f"{field}: words not in the bundled dictionary: {', '.join(sorted(unknown))}",
                field=field,
            )
        for i, (word, phones) in enumerate(found):  # the search is rebuilt once, at the last
            self._decoder.add_word(word, phones, i == len(found) - 1)

    def _use_grammar(self, phrases: Sequence[str]) -> None:
        alternatives = [" ".join(_WORD.findall(p.lower())) for p in phrases]
        alternatives = [a for a in dict.fromkeys(alternatives) if a]
        if not alternatives:
            raise BackendError(
                "pocketsphinx.init", ErrorCode.INVALID_CONFIG, "phrases: no words", field="phrases"
            )
        # A rarer word than the default vocabulary holds comes from the full dictionary.
        self._add_words([w for a in alternatives for w in a.split()], field="phrases")
        grammar = f"#JSGF V1.0;\ngrammar {_GRAMMAR};\npublic <utt> = {' | '.join(alternatives)};\n"
        self._decoder.add_jsgf_string(_GRAMMAR, grammar)
        self._decoder.activate_search(_GRAMMAR)

    async def warm_up(self) -> None:
        """Decode a short bundled clip end to end. Each utterance starts from fresh feature
        state and its own cepstral mean, so nothing of it reaches the next; a call with an
        utterance in flight is left alone."""
        if self._current is not None:
            return
        try:
            await self.recognize(_WARM_UP_CLIP.read_bytes())
        except BackendError as exc:  # a real utterance took the decoder meanwhile: it wins
            if exc.code != ErrorCode.PIPELINE_ERROR:
                raise

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

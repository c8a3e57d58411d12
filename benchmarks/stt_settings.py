"""Pocketsphinx search settings: CPU per speech-second against word accuracy, and the first turn.

Every clip is espeak-ng speech (each phrase × voice × speed synthesized in a fresh process, as
the tests' `speak()` does: espeak-ng's output drifts with its library state), resampled to
16 kHz and pushed through `PocketsphinxSTT` in the pipeline's 4096-byte (128 ms) pieces. Each
setting runs in a process of its own, single-threaded; its cost is process CPU time (not wall
time: the machine is shared) over the whole decode, `finish` included, per second of audio.

    python -m benchmarks.stt_settings            # sweep + first turn -> results/stt_settings.*
    python -m benchmarks.stt_settings --only default,fwdflat_off
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).with_name("results")
CACHE = Path(os.environ.get("STT_SETTINGS_CACHE", "/tmp/stt_settings_cache"))
PIECE_BYTES = 4096  # what the pipeline pushes: four 32 ms VAD frames at 16 kHz
LEAD_S = 0.2  # silence before the words, as the VAD's pre-roll leaves

# The tests' phrases, then short agent-style ones.
TEST_PHRASES = [
    "hello world",
    "stop please",
    "hello",
    "world",
    "yeah",
    "open the door",
    "you said hello world",
]
AGENT_PHRASES = [
    "yes please",
    "no thank you",
    "what time is it",
    "cancel my order",
    "book a table for two",
    "call me back tomorrow",
    "i need help with my account",
    "what is the weather today",
    "tell me a joke",
    "goodbye",
]
PHRASES = TEST_PHRASES + AGENT_PHRASES
FIRST_TURN_TEXT = "i need help with my account"  # not the warm-up clip's words
VOICES = ["en-us", "en-us+f3", "en"]  # "en" is British English
RATES_WPM = [150, 190]

_SYNTHESIZE = """
import asyncio, sys
from providers.espeak.tts import EspeakTTS
async def main():
    tts = EspeakTTS(voice=sys.argv[2], rate_wpm=int(sys.argv[3]))
    pcm = b"".join([c async for c in tts.synthesize(sys.argv[1])])
    sys.stdout.buffer.write(tts.capabilities.sample_rate_hz.to_bytes(4, "little") + pcm)
asyncio.run(main())
"""


def clips() -> list[dict[str, Any]]:
    """Every phrase × voice × rate, 16 kHz PCM16 with `LEAD_S` of silence before it; cached."""
    import soxr

    CACHE.mkdir(parents=True, exist_ok=True)
    out = []
    for voice in VOICES:
        for rate in RATES_WPM:
            for text in PHRASES:
                path = CACHE / f"{voice}_{rate}_{text.replace(' ', '_')}.pcm"
                if not path.exists():
                    proc = subprocess.run(
                        [sys.executable, "-c", _SYNTHESIZE, text, voice, str(rate)],
                        capture_output=True,
                        check=True,
                    )
                    src = int.from_bytes(proc.stdout[:4], "little")
                    samples = np.frombuffer(proc.stdout[4:], dtype="<i2")
                    samples = soxr.resample(samples, src, 16000)
                    lead = np.zeros(int(16000 * LEAD_S), dtype="<i2")
                    path.write_bytes(np.concatenate([lead, samples]).astype("<i2").tobytes())
                out.append({"text": text, "voice": voice, "rate": rate, "path": str(path)})
    return out


def pruned_dict(words: int) -> str:
    """The bundled dictionary cut to the language model's `words` likeliest words. Nothing is
    added for the phrase set: "cancel" ranks 5,161st, so dict_5k cannot hear it."""
    from providers.pocketsphinx.prune_dict import prune

    path = CACHE / f"en-us-{words}.dict"
    if not path.exists():
        prune(words, path)
    return str(path)


# name -> PocketsphinxSTT keyword arguments; decoder options over pocketsphinx's defaults
# (beam 1e-48, wbeam 7e-29, pbeam 1e-48, ds 1, maxhmmpf 30000, topn 4, fwdflat and bestpath on).
def settings() -> dict[str, dict[str, Any]]:
    def opts(**o: Any) -> dict[str, Any]:
        return {"decoder_options": o}

    return {
        "default": opts(),
        "beam_1e-40": opts(beam=1e-40, wbeam=1e-24, pbeam=1e-40),
        "beam_1e-30": opts(beam=1e-30, wbeam=1e-20, pbeam=1e-30),
        "beam_1e-20": opts(beam=1e-20, wbeam=1e-15, pbeam=1e-20),
        "ds_2": opts(ds=2),
        "ds_3": opts(ds=3),
        "maxhmmpf_10000": opts(maxhmmpf=10000),
        "maxhmmpf_3000": opts(maxhmmpf=3000),
        "maxhmmpf_1500": opts(maxhmmpf=1500),
        "topn_2": opts(topn=2),
        "topn_1": opts(topn=1),
        "fwdflat_off": opts(fwdflat=False),
        "fwdflat_bestpath_off": opts(fwdflat=False, bestpath=False),
        "dict_20k": opts(dict=pruned_dict(20000)),
        "dict_5k": opts(dict=pruned_dict(5000)),
        "grammar_phrases": {"phrases": PHRASES},
        "new_defaults": {},
    }


def combos() -> dict[str, dict[str, Any]]:
    """Second round: finer steps around round one's findings, and the cheap ones together."""

    def opts(**o: Any) -> dict[str, Any]:
        return {"decoder_options": o}

    return {
        "beam_1e-44": opts(beam=1e-44, pbeam=1e-44),
        "wbeam_1e-24": opts(wbeam=1e-24),
        "maxwpf_20": opts(maxwpf=20),
        "maxwpf_10": opts(maxwpf=10),
        "pl_window_0": opts(pl_window=0),
        "pl_window_10": opts(pl_window=10),
        "dict_10k": opts(dict=pruned_dict(10000)),
        "dict_40k": opts(dict=pruned_dict(40000)),
        "dict_20k+maxhmmpf_10000": opts(dict=pruned_dict(20000), maxhmmpf=10000),
        "dict_20k+maxhmmpf_3000": opts(dict=pruned_dict(20000), maxhmmpf=3000),
        "dict_20k+fwdflat_off": opts(dict=pruned_dict(20000), fwdflat=False),
        "dict_10k+fwdflat_off": opts(dict=pruned_dict(10000), fwdflat=False),
    }


def word_errors(ref: str, hyp: str) -> int:
    """Substitutions + deletions + insertions (word-level edit distance)."""
    r, h = ref.split(), hyp.split()
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, hw in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
    return row[-1]


async def _decode(stt: Any, pcm: bytes) -> str:
    stream = stt.stream()
    for i in range(0, len(pcm), PIECE_BYTES):
        await stream.push(pcm[i : i + PIECE_BYTES])
    return str(await stream.finish())


def run_one(name: str, kwargs: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """One setting, in this (fresh) process. Options are over pocketsphinx's own defaults (what
    the provider used before this sweep); `new_defaults` is the provider's `DECODER_OPTIONS`."""
    from providers.pocketsphinx import stt as provider

    chosen = dict(provider.DECODER_OPTIONS)
    provider.DECODER_OPTIONS.clear()
    if name == "new_defaults":
        kwargs = {"decoder_options": chosen}
    stt = provider.PocketsphinxSTT(**kwargs)
    audio = [Path(c["path"]).read_bytes() for c in items]

    async def main() -> dict[str, Any]:
        await _decode(stt, audio[0])  # first-touch costs are the first_turn section's business
        rows, cpu, finish_cpu, speech_s, errors, words = [], 0.0, [], 0.0, 0, 0
        for item, pcm in zip(items, audio, strict=True):
            t0 = time.process_time()
            stream = stt.stream()
            for i in range(0, len(pcm), PIECE_BYTES):
                await stream.push(pcm[i : i + PIECE_BYTES])
            t1 = time.process_time()
            hyp = await stream.finish()
            t2 = time.process_time()
            cpu += t2 - t0
            finish_cpu.append(t2 - t1)
            speech_s += len(pcm) / 32000
            e = word_errors(item["text"], hyp)
            errors += e
            words += len(item["text"].split())
            rows.append({k: item[k] for k in ("text", "voice", "rate")} | {"hyp": hyp})
        return {
            "setting": name,
            "options": {k: v for k, v in kwargs.items() if k != "phrases"}
            | ({"phrases": "the phrase set"} if "phrases" in kwargs else {}),
            "cpu_s_per_speech_s": round(cpu / speech_s, 4),
            "finish_cpu_ms_p50": round(1000 * statistics.median(finish_cpu), 1),
            "word_accuracy": round(1 - errors / words, 4),
            "phrases_exact": sum(r["hyp"] == r["text"] for r in rows),
            "phrases": len(rows),
            "speech_s": round(speech_s, 1),
            "hypotheses": rows,
        }

    return asyncio.run(main())


def first_turn(mode: str, clip: str) -> dict[str, Any]:
    """In this fresh process: load, `warm_up()` if `mode` is "warm", then decode the same clip
    3 times; CPU and wall seconds of each decode. "before": pocketsphinx's own settings (the
    provider's before this sweep), no warm-up; "cold": the provider's, no warm-up."""
    from providers.pocketsphinx import stt as provider

    if mode == "before":
        provider.DECODER_OPTIONS.clear()
    warm = mode == "warm"
    pcm = Path(clip).read_bytes()
    t0 = time.perf_counter()
    stt = provider.PocketsphinxSTT()
    load_ms = round(1000 * (time.perf_counter() - t0), 1)

    async def main() -> dict[str, Any]:
        t1 = time.perf_counter()
        if warm:
            await stt.warm_up()
        out: dict[str, Any] = {
            "load_ms": load_ms,
            "warm_up_ms": round(1000 * (time.perf_counter() - t1), 1),
            **{k: [] for k in ("cpu_ms", "wall_ms", "finish_wall_ms", "text")},
        }
        for _ in range(3):
            c0, w0 = time.process_time(), time.perf_counter()
            stream = stt.stream()
            for i in range(0, len(pcm), PIECE_BYTES):
                await stream.push(pcm[i : i + PIECE_BYTES])
            w1 = time.perf_counter()
            text = await stream.finish()
            out["cpu_ms"].append(round(1000 * (time.process_time() - c0), 1))
            out["wall_ms"].append(round(1000 * (time.perf_counter() - w0), 1))
            out["finish_wall_ms"].append(round(1000 * (time.perf_counter() - w1), 1))
            out["text"].append(text)
        return out

    return asyncio.run(main())


def _in_subprocess(*args: str) -> Any:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.stt_settings", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.splitlines()[-1])


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5))
    colour = {"default": "tab:red", "new_defaults": "tab:green"}
    for r in rows:
        x, y = r["cpu_s_per_speech_s"], r["word_accuracy"]
        ax.scatter(x, y, color=colour.get(r["setting"], "tab:blue"), zorder=3)
        ax.annotate(r["setting"], (x, y), xytext=(4, 3), textcoords="offset points", fontsize=6)
    ax.set_xlabel("CPU seconds per second of speech (process time, single thread)")
    ax.set_ylabel("word accuracy (1 - WER)")
    ax.set_title("pocketsphinx settings on espeak-ng phrases (3 voices × 2 speeds)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated setting names")
    ap.add_argument("--repeat", type=int, default=1, help="runs per setting (CPU: median)")
    ap.add_argument("--first-turn-runs", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS / "stt_settings.json"))
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    ap.add_argument("--_first", choices=["before", "cold", "warm"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    items = clips()
    table = settings() | combos()
    if args._one:
        print(json.dumps(run_one(args._one, table[args._one], items)))
        return
    if args._first:
        clip = next(c for c in items if c["text"] == FIRST_TURN_TEXT)
        print(json.dumps(first_turn(args._first, clip["path"])))
        return

    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if out_path.exists() else {}
    done = {r["setting"]: r for r in previous.get("settings", [])}
    names = [n for n in args.only.split(",") if n] if args.only is not None else list(table)
    cpu_runs: dict[str, list[float]] = {}
    for name in [n for _ in range(args.repeat) for n in names]:  # interleaved: same load
        row = _in_subprocess("--_one", name)
        cpu_runs.setdefault(name, []).append(row["cpu_s_per_speech_s"])
        if name in done and len(cpu_runs[name]) > 1:  # a repeat: decoding is deterministic
            assert row["hypotheses"] == done[name]["hypotheses"], name
        row["cpu_s_per_speech_s_runs"] = cpu_runs[name]
        row["cpu_s_per_speech_s"] = round(statistics.median(cpu_runs[name]), 4)
        done[name] = row
        print(
            f"{name:28s} cpu/speech-s {row['cpu_s_per_speech_s']:.3f}  "
            f"finish p50 {row['finish_cpu_ms_p50']:6.1f} ms  "
            f"word acc {row['word_accuracy']:.3f}  exact {row['phrases_exact']}/{row['phrases']}",
            flush=True,
        )
        _write(out_path, previous, done)
    if args.first_turn_runs:
        ft: dict[str, Any] = {}
        for mode in ("before", "cold", "warm"):
            runs = [_in_subprocess("--_first", mode) for _ in range(args.first_turn_runs)]
            ft[mode] = {
                "runs": runs,
                **{
                    f"{k}_p50": [statistics.median(r[k][i] for r in runs) for i in range(3)]
                    for k in ("cpu_ms", "wall_ms", "finish_wall_ms")
                },
                "load_ms_p50": statistics.median(r["load_ms"] for r in runs),
                "warm_up_ms_p50": statistics.median(r["warm_up_ms"] for r in runs),
            }
            print(mode, {k: v for k, v in ft[mode].items() if k != "runs"}, flush=True)
        previous["first_turn"] = {
            "clip": f"{FIRST_TURN_TEXT!r}, {VOICES[0]}, {RATES_WPM[0]} wpm",
            "how": "fresh process each run: load, warm_up() (warm only), the same clip 3 times; "
            "before: pocketsphinx's own settings (the old defaults); p50 over the runs",
            **ft,
        }
        _write(out_path, previous, done)


def _write(path: Path, previous: dict[str, Any], done: dict[str, dict[str, Any]]) -> None:
    rows = list(done.values())
    base = done.get("default")
    for r in rows:
        if base:
            r["cpu_vs_default"] = round(r["cpu_s_per_speech_s"] / base["cpu_s_per_speech_s"], 3)
    doc = {
        "what": "pocketsphinx settings: CPU per speech-second vs word accuracy (stt_settings.py)",
        "phrases": PHRASES,
        "voices": VOICES,
        "rates_wpm": RATES_WPM,
        "piece_bytes": PIECE_BYTES,
        **{k: v for k, v in previous.items() if k not in ("settings",)},
        "settings": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    plot(rows, path.with_suffix(".png"))


if __name__ == "__main__":
    main()

"""What `benchmarks.voice_latency` prints and plots: a line per level as it ends, the
summary and `results/<name>.png`.

Why apart: presentation only; it reads the report dict and changes none of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import RESULTS
from benchmarks.voice_latency_calls import FIRST_TURN_TURNS
from benchmarks.voice_latency_targets import FIRST_TURN_RATIO, V2V_P50_MS, V2V_P95_MS


def print_first_turn(f: dict[str, Any]) -> None:
    print(
        f"first turn on a fresh backend ({f['worker']} worker, create {f['create_ms']} ms): "
        f"turn 1 v2v {f['turn_1_v2v_ms']} ms, turns 2-{FIRST_TURN_TURNS} median "
        f"{f['turns_2_5_median_v2v_ms']} ms, ratio {f['ratio']}",
        flush=True,
    )


def print_row(n: int, e: dict[str, Any], acc: dict[str, Any]) -> None:
    v, w, c = e["client_v2v_ms"], e["waterfall_p50_ms"], e["cpu"]
    within = f"{e['v2v_within_500ms']:.0%}" if e["v2v_within_500ms"] is not None else "-"
    print(
        f"N={n:<3} admitted {e['admitted']} refused {e['refused']} "
        f"(p50 {e['refusal_ms']['p50']} max {e['refusal_ms']['max']} ms) | "
        f"v2v p50 {v['p50']:7.1f} p95 {v['p95']:7.1f} ms (n={v['n']}, {within} ≤ 500) | p50 "
        + ", ".join(f"{k.removesuffix('_ms')} {x:.1f}" for k, x in w.items())
        + f" | Ray {c['ray_cores_busy']} cores (machine {c['machine_cores_busy']}), "
        + f"STT {c['stt_cpu_per_speech_s']} s/s speech | word acc {acc['word_accuracy']}",
        flush=True,
    )


def print_report(r: dict[str, Any]) -> None:
    b = r["in_process"]["client_v2v_ms"]
    print(f"\nin-process baseline v2v (1 session): p50 {b['p50']:.1f} p95 {b['p95']:.1f} ms")
    one = r.get("runtime_overhead_ms")
    if one:
        print(
            f"runtime overhead (Ray + Serve + websocket, 1 session): p50 {one['v2v_p50']:.1f} "
            f"p95 {one['v2v_p95']:.1f} ms; by stage (p50): {one['by_stage_p50']}"
        )
    g = r["barge_in_last_byte_after_due_ms"]
    print(
        f"barge-in: last reply byte after the interruption was due: p50 {g['p50']:.1f} "
        f"max {max(g['p50'], g['p99']):.1f} ms (n={g['n']})"
    )
    print(f"max calls within latency: {r['max_calls_within_latency']}")
    for k, t in r["targets"].items():
        if isinstance(t, dict) and "met" in t:
            print(f"target {k}: {'met' if t['met'] else 'MISSED' if t['met'] is False else '-'}")


def plot(r: dict[str, Any], name: str = "voice_latency") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    levels = list(r["concurrency"])
    entries = [r["concurrency"][n] for n in levels]
    stages = list(entries[0]["waterfall_p50_ms"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 5), width_ratios=[3, 2])
    x = np.arange(len(levels))
    bottom = np.zeros(len(levels))
    for s in stages:
        vals = np.array([e["waterfall_p50_ms"][s] for e in entries], dtype=float)
        vals = np.nan_to_num(vals)
        ax.bar(x, vals, bottom=bottom, label=s.removesuffix("_ms"), width=0.6)
        bottom += vals
    p50 = [e["client_v2v_ms"]["p50"] for e in entries]
    p95 = [e["client_v2v_ms"]["p95"] for e in entries]
    ax.plot(x, p50, "k^", label="client v2v p50 (admitted)")
    ax.plot(x, p95, "kv", mfc="none", label="client v2v p95 (admitted)")
    ax.axhline(V2V_P50_MS, color="tab:green", ls="--", lw=1, label=f"target p50 ≤ {V2V_P50_MS:g}")
    ax.axhline(V2V_P95_MS, color="tab:red", ls=":", lw=1, label=f"target p95 ≤ {V2V_P95_MS:g}")
    top = max([V2V_P95_MS, *[v for v in p95 if v == v]]) * 1.15
    for i, e in enumerate(entries):
        ax.text(
            i,
            top * 0.97,
            f"{e['admitted']} admitted\n{e['refused']} refused",
            ha="center",
            va="top",
            fontsize=8,
        )
    ax.set_ylim(0, top)
    ax.set_xticks(x, levels)
    cap = r.get("speech_capacity", {}).get("capacity_by_node", {})
    ax.set_xlabel(f"calls offered at once (speech capacity {', '.join(map(str, cap.values()))})")
    ax.set_ylabel("ms")
    ax.set_title("Admitted calls' voice-to-voice latency and waterfall (p50)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4)
    f = r["first_turn"]
    v = [s["client_v2v_ms"] for s in f["samples"]]
    turns = np.arange(1, len(v) + 1)
    ax2.bar(turns, [x or 0 for x in v], color=["tab:orange", *["tab:blue"] * (len(v) - 1)])
    if f["turns_2_5_median_v2v_ms"]:
        m = f["turns_2_5_median_v2v_ms"]
        ax2.axhline(m, color="k", lw=1, label="median of turns 2-5")
        ax2.axhline(m * FIRST_TURN_RATIO, color="tab:red", ls=":", lw=1, label="+10 % (target)")
    ax2.set_ylim(0, max([x or 0 for x in v] + [(f["turns_2_5_median_v2v_ms"] or 0) * 1.1]) * 1.1)
    ax2.set_xlabel("turn of the first call on a fresh backend")
    ax2.set_ylabel("client v2v (ms)")
    ax2.set_title(f"First turn: ratio {f['ratio']}", fontsize=10)
    ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=120)

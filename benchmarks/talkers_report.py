"""What `benchmarks.talkers` reports: the targets, the LiveKit − websocket differences, a row
per level on stdout and talkers.png. Kept apart from the measuring so it can change alone.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import RESULTS


def livekit_minus_websocket(by: dict[str, Any], lk: dict[str, Any]) -> dict[str, Any]:
    """The LiveKit path's v2v minus the websocket path's at each N both ran (same run)."""
    out = {}
    for n in sorted(set(by) & set(lk), key=int):
        a, b = lk[n]["v2v_ms"], by[n]["v2v_ms"]
        out[n] = {
            q: round(a[q] - b[q], 1) if a[q] is not None and b[q] is not None else None
            for q in ("p50", "p95")
        }
    return out


def targets(by: dict[str, dict[str, Any]], lk: dict[str, dict[str, Any]] | None = None) -> dict:
    def check(n: str, f: Any, where: dict[str, Any] = by) -> bool | None:
        e = where.get(n)
        return None if e is None else bool(f(e))

    def ok(x: Any, bound: float) -> bool:
        return x is not None and x <= bound

    out = {
        "overhead_1_call_p50_le_15ms": check("1", lambda e: ok(e["overhead_ms"]["p50"], 15)),
        "overhead_1_call_p95_le_15ms": check("1", lambda e: ok(e["overhead_ms"]["p95"], 15)),
        "overhead_50_calls_p95_le_50ms": check("50", lambda e: ok(e["overhead_ms"]["p95"], 50)),
        "turns_lost_50_calls_is_0": check("50", lambda e: e["turns_lost"] == 0),
    }
    if lk is not None:
        diff = livekit_minus_websocket(by, lk).get("1", {}).get("p50")
        out["livekit_minus_websocket_1_call_p50_le_50ms"] = None if diff is None else diff <= 50
        out["livekit_turns_lost_25_calls_is_0"] = check(
            "25", lambda e: e["turns_lost"] == 0, where=lk
        )
    return out


def print_row(n: int, e: dict[str, Any], path: str = "websocket") -> None:
    v, b, o = e["v2v_ms"], e["baseline_v2v_ms"], e["overhead_ms"]
    sfu = f" | livekit-server {e['sfu_cpu_pct']} %" if "sfu_cpu_pct" in e else ""
    print(
        f"{path:<9} N={n:<3} v2v p50 {v['p50']} p95 {v['p95']} ms (n={v['n']}) | in-process "
        f"p50 {b['p50']} p95 {b['p95']} | overhead p50 {o['p50']} p95 {o['p95']} | Ray "
        f"{e['cpu_pct_per_call']} % core/call ({e['ray_cores_busy']} cores) | fake "
        f"{e['fake_cpu_pct']} %{sfu} | lost "
        f"{e['turns_lost']}/{e['turns']}",
        flush=True,
    )


def plot(r: dict[str, Any], name: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    by = r["by_talkers"] or r.get("by_talkers_livekit") or {}
    ns = [int(n) for n in by]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for q, style in (("p50", "o-"), ("p95", "s--")):
        a1.plot(ns, [by[str(n)]["v2v_ms"][q] for n in ns], style, label=f"v2v {q}")
        a1.plot(ns, [by[str(n)]["baseline_v2v_ms"][q] for n in ns], style, label=f"in-process {q}")
        a1.plot(ns, [by[str(n)]["overhead_ms"][q] for n in ns], style, label=f"overhead {q}")
    lk = r.get("by_talkers_livekit") or {}
    if lk and lk is not by:
        lns = [int(n) for n in lk]
        for q, style in (("p50", "D-"), ("p95", "D--")):
            a1.plot(lns, [lk[str(n)]["v2v_ms"][q] for n in lns], style, label=f"LiveKit v2v {q}")
        a2.plot(
            lns,
            [lk[str(n)]["cpu_pct_per_call"] for n in lns],
            "D-",
            label="Ray CPU / call, LiveKit",
        )
    a1.set_xlabel("talking calls")
    a1.set_ylabel("ms")
    a1.set_title("Voice-to-voice (client) and runtime overhead")
    a1.legend(fontsize=7)
    a2.plot(ns, [by[str(n)]["cpu_pct_per_call"] for n in ns], "o-", label="Ray CPU / call")
    a2.plot(ns, [by[str(n)]["fake_cpu_pct"] for n in ns], "^:", label="fake provider (total)")
    a2.set_xlabel("talking calls")
    a2.set_ylabel("% of one core")
    lost = a2.twinx()
    lost.bar(ns, [by[str(n)]["turns_lost"] for n in ns], alpha=0.3, color="red", width=1.5)
    lost.set_ylabel("turns lost", color="red")
    a2.set_title("CPU per talking call, turns lost")
    a2.legend(fontsize=7, loc="upper left")
    if len(ns) > 2:
        for a in (a1, a2):
            a.set_xscale("log")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=120)

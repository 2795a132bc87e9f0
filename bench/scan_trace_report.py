"""Reads what ``bench.scan_trace`` recorded and says where the slowest scans' time went.

For each window (baseline, during the import): the scans in it, their server-side p50 /
p99, and for the slowest 1 % (at least 5) the mean of each part (``bench.scan_trace``
defines them), ``queue`` being what is left outside the thread trip (event loop,
waiting for a worker thread, HTTP). Then the write-lock holds by holder (p50, p99, max)
and the GC pauses in the window.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PARTS = ("lock_wait", "sql", "commit", "cpu", "runq", "gc", "queue")


def _pct(data: list[float], q: float) -> float:
    if not data:
        return float("nan")
    data = sorted(data)
    k = max(0, min(len(data) - 1, round(q / 100 * len(data) + 0.5) - 1))
    return data[k]


def load(path: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {
        "scan": [],
        "hold": [],
        "gc": [],
        "child": [],
        "childgc": [],
        "childend": [],
    }
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        item = json.loads(line)
        out[item["kind"]].append(item)
    return out


def _gc_overlap(rec: dict[str, Any], gcs: list[dict[str, Any]]) -> float:
    start, end = rec["t"], rec["t"] + rec["total"]
    return sum(
        max(0.0, min(end, g["t"] + g["paused"]) - max(start, g["t"]))
        for g in gcs
        if g["t"] < end and g["t"] + g["paused"] > start
    )


def report(path: Path, windows: dict[str, tuple[float, float]]) -> str:
    trace = load(path)
    lines: list[str] = []
    for name, (start, end) in windows.items():
        scans = [r for r in trace["scan"] if start <= r["t"] < end and r.get("status") == 200]
        if not scans:
            continue
        for r in scans:
            r["gc"] = _gc_overlap(r, trace["gc"])
            r["queue"] = r["total"] - r.get("thread", 0.0)
        totals = [r["total"] for r in scans]
        slow = sorted(scans, key=lambda r: r["total"], reverse=True)[: max(5, len(scans) // 100)]
        lines.append(
            f"{name}: {len(scans)} scans, server-side p50 {_pct(totals, 50) * 1000:.0f} ms, "
            f"p99 {_pct(totals, 99) * 1000:.0f} ms, max {max(totals) * 1000:.0f} ms"
        )
        for label, group in (("slowest 1 %", slow), ("all", scans)):
            means = {p: sum(r.get(p, 0.0) for r in group) / len(group) * 1000 for p in PARTS}
            total = sum(r["total"] for r in group) / len(group) * 1000
            parts = ", ".join(f"{p} {v:.1f}" for p, v in means.items())
            lines.append(f"  {label} (n={len(group)}): total {total:.1f} ms = {parts}")
        worst = slow[:5]
        for r in worst:
            parts = " ".join(f"{p}={r.get(p, 0.0) * 1000:.0f}" for p in PARTS)
            lines.append(f"    {r['total'] * 1000:.0f} ms: {parts}")
            if "lock_t0" in r:  # the holds it waited behind
                t0, t1 = r["lock_t0"], r["lock_t0"] + r.get("lock_wait", 0.0)
                ahead = [
                    h for h in trace["hold"] if t0 - 1 <= h["t"] < t1 and h["t"] + h["held"] > t0
                ]
                lines.append(
                    "      waited behind: "
                    + ", ".join(f"{h['holder']} {h['held'] * 1000:.0f}" for h in ahead)
                )
                for g in trace["childgc"] + trace["gc"]:
                    if g["t"] < t1 and g["t"] + g["paused"] > t0 and g["paused"] > 0.02:
                        who = "child" if g in trace["childgc"] else "API"
                        lines.append(
                            f"        {who} GC gen {g['gen']}: {g['paused'] * 1000:.0f} ms"
                        )
                for c in trace["child"]:
                    if c["t"] < t1 and c["t"] + c["work"] + c["commit"] > t0:
                        lines.append(
                            f"        child transaction: work {c['work'] * 1000:.0f} ms, "
                            f"commit {c['commit'] * 1000:.0f} ms"
                        )
        holds = [h for h in trace["hold"] if start <= h["t"] < end]
        by: dict[str, list[float]] = {}
        for h in holds:
            by.setdefault(h["holder"], []).append(h["held"])
        for holder, held in sorted(by.items()):
            lines.append(
                f"  write lock held by {holder}: {len(held)} times, p50 "
                f"{_pct(held, 50) * 1000:.1f} ms, p99 {_pct(held, 99) * 1000:.1f} ms, "
                f"max {max(held) * 1000:.1f} ms"
            )
        child = [c for c in trace["child"] if start <= c["t"] < end]
        if child:
            work = [c["work"] for c in child]
            commits = [c["commit"] for c in child]
            lines.append(
                f"  child transactions: {len(child)}, BEGIN to COMMIT (lock wait included) "
                f"p50 {_pct(work, 50) * 1000:.1f} / "
                f"p99 {_pct(work, 99) * 1000:.1f} / max {max(work) * 1000:.1f} ms, COMMIT p50 "
                f"{_pct(commits, 50) * 1000:.1f} / p99 {_pct(commits, 99) * 1000:.1f} / max "
                f"{max(commits) * 1000:.1f} ms"
            )
        cgc = [g for g in trace["childgc"] if start <= g["t"] < end]
        if cgc:
            lines.append(
                f"  child GC pauses: {len(cgc)}, max {max(g['paused'] for g in cgc) * 1000:.1f} ms"
                f" (gen 2: {sum(1 for g in cgc if g['gen'] == 2)}, "
                f"{sum(g['paused'] for g in cgc if g['gen'] == 2) * 1000:.0f} ms in all)"
            )
        for c in trace["childend"]:
            if start <= c["t"] < end:
                lines.append(
                    f"  child: {c['cpu']:.1f} s of CPU, peak resident memory "
                    f"{c['maxrss_mb']:.0f} MiB"
                )
        gcs = [g for g in trace["gc"] if start <= g["t"] < end]
        if gcs:
            longest = max(gcs, key=lambda g: g["paused"])
            lines.append(
                f"  API GC pauses: {len(gcs)}, max {longest['paused'] * 1000:.1f} ms (gen "
                f"{longest['gen']}, {longest.get('cpu', 0) * 1000:.1f} ms of it on the CPU; "
                f"gen 2: {sum(1 for g in gcs if g['gen'] == 2)})"
            )
    return "\n".join(lines)

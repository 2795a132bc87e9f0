"""What a forecast learnt and what it simulated, beside what really happened
(``BENCH_FORECAST_EXPLAIN=1 python -m bench.forecast lab``).

At each forecast point: the site as simulated (live runs, slots, technician delay), each
step's learnt figures (median, spread, failure rates, where from), each laptop's state
and its forecast ready time (P50 over the runs); at the end, each laptop's actual ready
time and the step attempts the run log holds.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np

from forecast.world import Status
from provisioning.runs.states import STEP_NAMES


def at_point(computed: Any, *, started: datetime, serial_of: dict[int, str]) -> dict[str, Any]:
    """A summary of one forecast, kept until the wave's end."""
    world, index, out = computed.world, computed.index, computed.outcome
    t0 = (index.t0 - started).total_seconds()
    site = world.sites[0]
    fleet = world.fleet
    laptops = []
    for j, device_id in enumerate(index.device_ids.tolist()):
        ready = out.ready[:, j]
        aside = out.aside[:, j]
        fin = np.where(aside, np.nan, ready)
        laptops.append(
            {
                "serial": serial_of.get(device_id, str(device_id)),
                "status": Status(int(fleet.status[j])).name,
                "step": STEP_NAMES[int(fleet.step[j])],
                "elapsed": float(fleet.elapsed[j]),
                "progress": float(fleet.progress[j]),
                "retries": int(fleet.retries[j]),
                "p50": t0 + float(np.nanmedian(fin)) if np.isfinite(fin).any() else None,
                "p90": t0 + float(np.nanquantile(fin, 0.9)) if np.isfinite(fin).any() else None,
                "aside": float(aside.mean()),
            }
        )
    steps = []
    for p in world.profiles:
        for s, dist in enumerate(p.steps):
            v = np.asarray(dist.samples, dtype=float)
            steps.append(
                {
                    "profile": p.name,
                    "step": STEP_NAMES[s],
                    "n": dist.learned_from,
                    "median": float(np.median(v)),
                    "p10": float(np.quantile(v, 0.1)),
                    "p90": float(np.quantile(v, 0.9)),
                    "p_retry": dist.p_retry,
                    "p_fatal": dist.p_fatal,
                }
            )
    return {
        "t0": t0,
        "live": site.live,
        "slots": site.slots,
        "tech_delay": site.tech_delay,
        "give_up": site.give_up,
        "shares": site.shares[1:4].tolist(),
        "sent_bytes": fleet.sent_bytes[0].tolist(),
        "laptops": laptops,
        "steps": steps,
        "sources": index.sources,
    }


def report(
    points: dict[float, dict[str, Any]], *, actual: dict[str, float], records: list[Any]
) -> None:
    for point, info in sorted(points.items()):
        print(
            f"\n== forecast at {point:.0%} (t0 = {info['t0']:.1f} s): live {info['live']}, "
            f"slots {info['slots']}, technician delay {info['tech_delay']:.1f} s, "
            f"give up {info['give_up']:.0%}, shares {info['shares']}, bytes/step "
            f"{[round(b) for b in info['sent_bytes']]}"
        )
        print("  step         n   median    p10     p90   p_retry p_fatal")
        for s in info["steps"]:
            print(
                f"  {s['step']:<11} {s['n']:>3} {s['median']:>8.3g} {s['p10']:>7.3g} "
                f"{s['p90']:>7.3g}  {s['p_retry']:.3f}  {s['p_fatal']:.3f}"
            )
        print("  laptop          status   step        elapsed  retries  P50    P90   actual")
        for lp in sorted(info["laptops"], key=lambda x: actual.get(x["serial"], 1e9)):
            p50 = f"{lp['p50']:.1f}" if lp["p50"] is not None else "-"
            p90 = f"{lp['p90']:.1f}" if lp["p90"] is not None else "-"
            real = actual.get(lp["serial"], float("nan"))
            print(
                f"  {lp['serial']:<15} {lp['status']:<8} {lp['step']:<11} {lp['elapsed']:>6.1f} "
                f"{lp['retries']:>7}  {p50:>5}  {p90:>5}  {real:.1f}  aside {lp['aside']:.0%}"
            )
    print("\n== the run log, per step (attempts: ok / retry / failed; seconds or bytes/s of ok)")
    by_step: dict[int, list[Any]] = defaultdict(list)
    for r in records:
        by_step[r.step].append(r)
    for s in sorted(by_step):
        rs = by_step[s]
        outcomes = [sum(1 for r in rs if r.outcome == o) for o in ("ok", "retry", "failed")]
        ok = [r.seconds for r in rs if r.outcome == "ok"]
        rates = [r.size / r.seconds for r in rs if r.outcome == "ok" and r.size and r.seconds]
        bad = [round(r.seconds, 1) for r in rs if r.outcome != "ok"]
        print(
            f"  {STEP_NAMES[s]:<11} {outcomes}  seconds {np.round(sorted(ok), 2).tolist()}"
            + (f"  B/s median {np.median(rates):.3g}" if rates else "")
            + (f"  failed attempts took {bad}" if bad else "")
        )

"""Charts drawn on the server as SVG: no script, no library, readable on a wall."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

from console import i18n


def _nice_max(value: int) -> int:
    if value <= 5:
        return 5
    magnitude = 10 ** int(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = int(step * magnitude)
        if top >= value:
            return top
    return value  # pragma: no cover


def hourly_bars(
    hours: Sequence[datetime],
    incoming: Sequence[int],
    outgoing: Sequence[int],
    *,
    title: str,
    incoming_label: str,
    outgoing_label: str,
    width: int = 960,
    height: int = 260,
) -> Markup:
    """Two bars per hour (e.g. scanned in / READY), hours along the bottom in the
    viewer's time zone, a labelled scale on the left."""
    left, right, top, bottom = 44, 8, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max([*incoming, *outgoing, 0]))
    n = max(1, len(hours))
    slot = plot_w / n
    bar = max(1.0, slot * 0.38)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(5):
        value = peak * k / 4
        y = top + plot_h - plot_h * k / 4
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(i18n.fmt_number(value))}</text>"
        )
    for i, hour in enumerate(hours):
        x = left + i * slot + (slot - 2 * bar) / 2
        for j, (series, css, label) in enumerate(
            ((incoming, "bar-in", incoming_label), (outgoing, "bar-out", outgoing_label))
        ):
            value = series[i] if i < len(series) else 0
            h = plot_h * value / peak if peak else 0
            local = hour.astimezone(i18n.TIMEZONE)
            parts.append(
                f'<rect class="{css}" x="{x + j * bar:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"><title>{escape(label)} '
                f"{local:%H}:00: {value}</title></rect>"
            )
        if i % 3 == 0:
            local = hour.astimezone(i18n.TIMEZONE)
            parts.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - 10}" '
                f'text-anchor="middle">{local:%H}h</text>'
            )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{width - right}" '
        f'y1="{top + plot_h}" y2="{top + plot_h}"/>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text above is escaped)

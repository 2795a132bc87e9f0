"""The relay's rules, as pure code (no database, no clock, no socket inside), like
``pipeline/scheduling.py``: which queued laptops form a wave, and, for each member,
where it takes the stream from (nearest healthy member first, the source last).

Why a chain: each member forwards what it receives to exactly one other, so every link
carries the image once and every laptop receives at its link's rate at the same time;
the wave takes about one image's time plus one chunk per hop. A tree of fan-out k
sends k copies out of each inner laptop's port, so each level runs at 1/k of the rate
(measured in ``bench.relay``). The chain's weakness, one slow or dead member holding
up those after it, is what the reroutes below answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

SOURCE = "source"


class Topology(StrEnum):
    CHAIN = "chain"
    """Each member takes from the one before it (the default)."""
    TREE = "tree"
    """Member i takes from member (i-1)//fanout: a k-ary tree (measured, not used)."""
    STAR = "star"
    """Everyone takes from the source: one stream per laptop, today's path."""


@dataclass(frozen=True)
class Candidate:
    """A laptop whose run is ready to stream (its PE answered, its disk chosen)."""

    run_id: int
    image_id: int
    site_id: int
    ready_at: float


@dataclass(frozen=True)
class WaveRule:
    """When laptops of one image and one site become a wave."""

    window_seconds: float = 60.0
    """How long the first laptop waits for others (a short wait against an image's
    minutes-long stream)."""
    max_members: int = 32


def form_waves(
    candidates: Iterable[Candidate], *, rule: WaveRule, now: float
) -> list[list[Candidate]]:
    """The waves to start now. Laptops are grouped by (site, image) in the order they
    became ready; a group starts when it is full or its first laptop has waited
    ``window_seconds``; a group of one is a plain stream. Laptops not returned wait."""
    groups: dict[tuple[int, int], list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: (c.ready_at, c.run_id)):
        groups.setdefault((c.site_id, c.image_id), []).append(c)
    waves: list[list[Candidate]] = []
    for group in groups.values():
        for i in range(0, len(group), rule.max_members):
            part = group[i : i + rule.max_members]
            if len(part) == rule.max_members or now - part[0].ready_at >= rule.window_seconds:
                waves.append(part)
    return waves


def joins(wave_image: int, wave_site: int, members: int, c: Candidate, rule: WaveRule) -> bool:
    """Whether a laptop ready after its wave started joins it at the tail (same image,
    same site, room left); the tail serves it everything it missed."""
    return c.image_id == wave_image and c.site_id == wave_site and members < rule.max_members


@dataclass
class Route:
    """The order of a wave's members and which ones are out of it."""

    topology: Topology = Topology.CHAIN
    fanout: int = 2
    order: list[str] = field(default_factory=list)
    dead: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)

    def join(self, member: str) -> None:
        """A member joins at the tail."""
        if member == SOURCE or member in self.order:
            raise ValueError(f"member {member} is already in the wave")
        self.order.append(member)

    def healthy(self, member: str) -> bool:
        return member not in self.dead and member not in self.corrupt

    def _ahead(self, member: str) -> list[str]:
        """Members this one may take from, nearest first (before the healthy filter)."""
        i = self.order.index(member)
        if self.topology is Topology.STAR:
            return []
        if self.topology is Topology.TREE:
            ancestors: list[str] = []
            while i > 0:
                i = (i - 1) // self.fanout
                ancestors.append(self.order[i])
            return ancestors
        return list(reversed(self.order[:i]))

    def upstreams(self, member: str) -> list[str]:
        """Where ``member`` takes the stream from, in order of preference: the healthy
        members ahead of it, nearest first, then the source. A member switches down
        this list by itself when its upstream fails; the worker sends a new list when
        it learns of a dead or corrupt member."""
        return [m for m in self._ahead(member) if self.healthy(m)] + [SOURCE]

    def affected_by(self, lost: str) -> list[str]:
        """The members whose list named ``lost`` (to be sent a new one)."""
        return [m for m in self.order if m != lost and lost in self._ahead(m)]

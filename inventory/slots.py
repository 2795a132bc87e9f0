"""Bench slots: which slot a laptop takes (the one asked for, or the lowest free one)."""

from __future__ import annotations

from core.errors import InvalidInput
from inventory.errors import BenchFull, SlotTaken
from inventory.models import Bench


def pick_slot(bench: Bench, busy: set[int], wanted: int | None) -> int:
    if wanted is not None:
        if wanted > bench.slots:
            raise InvalidInput(f"bench {bench.code} has slots 1..{bench.slots}, not {wanted}")
        if wanted in busy:
            raise SlotTaken(bench.code, wanted)
        return wanted
    return free_slot(bench, busy)


def free_slot(bench: Bench, busy: set[int]) -> int:
    """The lowest free slot. :raises BenchFull: none."""
    for slot in range(1, bench.slots + 1):
        if slot not in busy:
            return slot
    raise BenchFull(bench.code, bench.slots)

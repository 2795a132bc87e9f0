"""The relay's pure rules: which laptops form a wave, and each member's route."""

from __future__ import annotations

from provisioning.relay.plan import (
    SOURCE,
    Candidate,
    Route,
    SlowRule,
    Topology,
    WaveRule,
    form_waves,
    joins,
    slow_members,
)


def c(run: int, image: int = 1, site: int = 1, at: float = 0.0) -> Candidate:
    return Candidate(run_id=run, image_id=image, site_id=site, ready_at=at)


def test_waves_form_by_image_and_site_after_the_window() -> None:
    rule = WaveRule(window_seconds=60, max_members=3)
    ready = [c(1, at=0), c(2, at=10), c(3, image=2, at=5), c(4, site=2, at=50), c(5, at=20)]
    # Before the window: only a full group starts.
    assert form_waves(ready, rule=rule, now=30) == [[c(1, at=0), c(2, at=10), c(5, at=20)]]
    # After it: every group, a group of one being a plain stream.
    waves = form_waves(ready[1:], rule=rule, now=200)
    assert sorted(tuple(x.run_id for x in w) for w in waves) == [(2, 5), (3,), (4,)]


def test_a_full_wave_spills_into_the_next() -> None:
    rule = WaveRule(window_seconds=60, max_members=2)
    waves = form_waves([c(i, at=i) for i in range(5)], rule=rule, now=10)
    assert [[x.run_id for x in w] for w in waves] == [[0, 1], [2, 3]]  # 4 waits


def test_late_joiner_rule() -> None:
    rule = WaveRule(max_members=4)
    assert joins(1, 1, 3, c(9), rule)
    assert not joins(1, 1, 4, c(9), rule)  # full
    assert not joins(2, 1, 3, c(9), rule)  # another image
    assert not joins(1, 2, 3, c(9), rule)  # another site


def test_chain_routes_and_reroutes() -> None:
    route = Route()
    for m in ("a", "b", "c", "d"):
        route.join(m)
    assert route.upstreams("a") == [SOURCE]
    assert route.upstreams("d") == ["c", "b", "a", SOURCE]
    route.dead.add("b")
    assert route.affected_by("b") == ["c", "d"]
    assert route.upstreams("c") == ["a", SOURCE]
    route.corrupt.add("c")
    assert route.upstreams("d") == ["a", SOURCE]
    route.join("late")
    assert route.upstreams("late") == ["d", "a", SOURCE]


def test_tree_and_star_routes() -> None:
    tree = Route(topology=Topology.TREE, fanout=2)
    star = Route(topology=Topology.STAR)
    for m in ("a", "b", "c", "d", "e"):
        tree.join(m)
        star.join(m)
    assert tree.upstreams("e") == ["b", "a", SOURCE]
    assert tree.upstreams("c") == ["a", SOURCE]
    assert tree.affected_by("b") == ["d", "e"]
    assert star.upstreams("e") == [SOURCE]


def test_a_member_joins_once() -> None:
    route = Route()
    route.join("a")
    for bad in ("a", SOURCE):
        try:
            route.join(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} joined twice")


def test_a_disk_below_half_the_median_rate_is_slow() -> None:
    rule = SlowRule()
    rates = {"a": 400e6, "b": 380e6, "c": 150e6, "d": 420e6}
    assert slow_members(rates, rule) == ["c"]
    # Two slow disks: the slowest first.
    assert slow_members({**rates, "e": 10e6}, rule) == ["e", "c"]
    # Within half of the median: nobody moves.
    assert slow_members({"a": 400e6, "b": 210e6, "c": 390e6}, rule) == []
    # Too few reports to call a median.
    assert slow_members({"a": 400e6, "b": 1e6}, rule) == []


def test_moving_to_the_tail_reroutes_the_chain() -> None:
    route = Route(order=["m0", "slow", "m2", "m3"])
    assert route.move_to_tail("slow")
    assert route.order == ["m0", "m2", "m3", "slow"]
    assert route.upstreams("m2") == ["m0", SOURCE]
    assert route.upstreams("slow") == ["m3", "m2", "m0", SOURCE]
    # Already last: nothing to gain.
    assert not route.move_to_tail("slow")
    # Last of the healthy ones (the members behind it are dead): stays.
    route.dead.add("slow")
    assert not route.move_to_tail("m3")
    # The first healthy one stays too: the one behind it would take from the source.
    route.dead.add("m0")
    assert not route.move_to_tail("m2")

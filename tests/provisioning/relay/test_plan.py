"""The relay's pure rules: which laptops form a wave, and each member's route."""

from __future__ import annotations

from provisioning.relay.plan import SOURCE, Candidate, Route, Topology, WaveRule, form_waves, joins


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

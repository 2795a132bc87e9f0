"""The simulator's answers, pinned: a seeded world (``worlds.mixed``, every path of the
walk) gives these dates to the last bit. A change made for speed must leave them as they
are; a change to the model moves them on purpose, and says why in its commit."""

from __future__ import annotations

import hashlib

import numpy as np

from forecast import montecarlo
from tests.forecast.worlds import mixed

PINNED = {
    # ready P50, ready P90, dispatched P50, dispatched P90 (seconds since t0), set aside
    "wave": (306988.23788955156, 621952.5423655519, 381600.0, 644400.0, 5.484375),
    "PAR": (217977.31696548322, 362795.1254237239, 295200.0, 381600.0, 2.25),
    "LYO": (280161.69548763434, 621952.5423655519, 298800.0, 644400.0, 3.234375),
    "delivery 0": (6601.3899707162, 8708.082813074721, 36000.0, 36000.0, 2.0),
    "delivery 1": (4891.908511359067, 6199.1260884893945, 39600.0, 39600.0, 3.015625),
    "delivery 2": (11480.936930924185, 13408.793138318159, 36000.0, 36000.0, 0.046875),
    "delivery 3": (105419.30314867944, 275110.4117521923, 126000.0, 298800.0, 0.09375),
    "delivery 4": (104680.1944597413, 191424.46308031018, 122400.0, 208800.0, 0.03125),
    "delivery 5": (197945.0366556589, 621440.7100607555, 212400.0, 644400.0, 0.03125),
    "delivery 6": (19831.103417023238, 190320.68109844025, 36000.0, 208800.0, 0.046875),
    "delivery 7": (111939.54609138893, 276944.1980539265, 126000.0, 298800.0, 0.015625),
    "delivery 8": (196419.64336205894, 362173.91232723615, 208800.0, 381600.0, 0.0625),
    "delivery 9": (17544.22615771423, 195256.36063870514, 39600.0, 212400.0, 0.03125),
    "delivery 10": (110911.91669961, 276611.5781488746, 122400.0, 295200.0, 0.0625),
    "delivery 11": (222914.1707171672, 362494.3575858071, 298800.0, 385200.0, 0.046875),
}
DIGEST = "d81335df7f9cf711f4fe4f78460fbde77569fed0723bedfa52a997995961a2c0"
"""sha256 of every array of the outcome (each laptop in each run), in field order."""


def test_a_seeded_world_gives_the_pinned_dates() -> None:
    world = mixed()
    out = montecarlo.simulate(world, runs=64, seed=5)
    fleet = world.fleet
    groups = {
        "wave": np.arange(len(fleet)),
        "PAR": np.flatnonzero(fleet.site == 0),
        "LYO": np.flatnonzero(fleet.site == 1),
    }
    groups |= {f"delivery {d}": np.flatnonzero(fleet.delivery == d) for d in range(12)}
    got = {}
    for name, members in groups.items():
        d = montecarlo.dates(out, members, fleet.status)
        got[name] = (d.ready_p50, d.ready_p90, d.dispatched_p50, d.dispatched_p90, d.aside)
    assert got == PINNED
    digest = hashlib.sha256()
    for name in ("ready", "dispatched", "aside", "scanned", "claimed", "arrival"):
        digest.update(np.ascontiguousarray(getattr(out, name)).tobytes())
    assert digest.hexdigest() == DIGEST


def test_the_pinned_world_takes_every_path_of_the_walk() -> None:
    # The pins guard only what the world exercises: laptops in every state, a learnt
    # contention term, configure waves, a capped site, failures retried and set aside.
    world = mixed()
    fleet = world.fleet
    assert set(np.unique(fleet.status).tolist()) == set(range(7))
    assert any(s.contention > 0 for s in world.profiles[0].steps)
    assert world.profiles[1].os_family == "linux"
    assert np.isfinite(world.sites[0].shares[1:]).all()
    out = montecarlo.simulate(world, runs=64, seed=5)
    assert out.aside[:, fleet.status != 6].any()
    assert (out.claimed > out.scanned)[np.isfinite(out.claimed)].any()

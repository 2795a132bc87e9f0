"""The engine's scheduling rules, pure: no database, no lab, no clock."""

from __future__ import annotations

from typing import TypedDict

import pytest

from provisioning.pipeline.scheduling import (
    AfterFailure,
    Candidate,
    WaveRule,
    admit,
    after_failure,
    backoff_delay,
    on_their_way_to,
    rerate,
)


def test_admit_takes_no_more_than_the_worker_has_threads() -> None:
    candidates = [Candidate(i, 1) for i in range(1, 6)]
    assert admit(candidates, free=2, site_limits={1: 10}, default_limit=16, live={}) == [1, 2]


def test_admit_keeps_each_site_under_its_stream_limit_counting_other_workers() -> None:
    candidates = [Candidate(1, 7), Candidate(2, 7), Candidate(3, 8), Candidate(4, 7)]
    # Site 7 allows 2 streams and another worker already runs one there (run 99).
    taken = admit(candidates, free=10, site_limits={7: 2, 8: 1}, default_limit=16, live={7: [99]})
    assert taken == [1, 3]


def test_a_resumed_run_does_not_count_against_its_own_admission() -> None:
    # Run 5 is this worker's, still running under a live lease after a restart.
    taken = admit([Candidate(5, 7)], free=1, site_limits={7: 1}, default_limit=16, live={7: [5]})
    assert taken == [5]


def test_runs_without_a_site_are_limited_by_the_worker_only() -> None:
    candidates = [Candidate(i, None) for i in range(1, 4)]
    assert admit(candidates, free=8, site_limits={}, default_limit=2, live={}) == [1, 2]


def test_rerate_splits_the_site_rate_fairly() -> None:
    assert rerate(1000, {1: 0, 2: 0}, [1, 2]) == {1: 500, 2: 500}


def test_a_new_stream_only_takes_what_the_others_left_free() -> None:
    # Run 1 (another worker) still holds the whole rate: run 2 gets nothing yet, so the
    # recorded shares never add up to more than the cap.
    shares = rerate(1000, {1: 1000, 2: 0}, [2])
    assert shares == {2: 0}
    # Once run 1 is re-rated to its half, run 2 grows into the other half.
    assert rerate(1000, {1: 500, 2: 0}, [2]) == {2: 500}


@pytest.mark.parametrize("granted", [{1: 0, 2: 0, 3: 0}, {1: 900, 2: 50, 3: 0}, {1: 333}])
def test_recorded_shares_never_exceed_the_cap(granted: dict[int, int]) -> None:
    shares = rerate(1000, granted, list(granted))
    assert sum({**granted, **shares}.values()) <= 1000


def test_runs_not_sending_get_no_share() -> None:
    assert rerate(1000, {1: 0}, [1, 2]) == {1: 1000}


class _Wave(TypedDict):
    """A leader's wave, as WaveRule.keep_waiting takes it."""

    opened_at: float
    size: int
    joined: int


def test_a_wave_leader_waits_within_its_window_while_laptops_are_coming() -> None:
    rule = WaveRule(window=1.0, max_size=3)
    waiting: _Wave = {"opened_at": 10.0, "size": 1, "joined": 1}
    assert rule.keep_waiting(now=10.5, pending=2, **waiting)
    assert not rule.keep_waiting(now=11.0, pending=2, **waiting)  # window over
    assert not rule.keep_waiting(now=10.5, pending=1, **waiting)  # nobody else coming
    assert rule.keep_waiting(now=10.5, pending=None, **waiting)  # unknown: wait
    full: _Wave = {**waiting, "size": 3}
    assert not rule.keep_waiting(now=10.5, pending=5, **full)


def test_laptops_on_their_way_to_configure() -> None:
    where = [("linux", 2), ("linux", 6), ("linux", 7), ("windows", 1)]
    assert on_their_way_to(where, family="linux", step_index=6) == 2


def test_retry_while_attempts_are_left_for_a_retryable_error() -> None:
    assert after_failure(retryable=True, attempt=1, max_attempts=3) is AfterFailure.RETRY
    assert after_failure(retryable=True, attempt=3, max_attempts=3) is AfterFailure.FAIL
    assert after_failure(retryable=False, attempt=1, max_attempts=3) is AfterFailure.FAIL


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [backoff_delay(a, base=2.0, cap=30.0) for a in range(1, 7)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]

"""The autoscaler's floor: the pods with a job locked within the scale-down grace (plan.busy_pods), and the
scale-down below pods whose every job has run past it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobworker_operator import plan
from jobworker_operator.model import Autoscaling

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = 60
AUTO = Autoscaling(max_replicas=5, min_replicas=1, target_jobs_per_replica=10, scale_down_delay_seconds=GRACE)


class TestBusyPods:
    def test_unknown_without_lock_ages(self) -> None:
        assert plan.busy_pods(None, 3, GRACE) is None

    def test_no_holders(self) -> None:
        assert plan.busy_pods([], 0, GRACE) == 0

    @pytest.mark.parametrize(
        ("ages", "want"),
        [([1.0, 5.0, 59.9], 3), ([1.0, 60.0, 3600.0], 1), ([600.0, 3600.0], 0)],
    )
    def test_counts_the_workers_whose_newest_lock_is_within_the_grace(self, ages: list[float], want: int) -> None:
        assert plan.busy_pods(ages, len(ages), GRACE) == want

    def test_holders_beyond_the_listed_count_as_busy_while_every_listed_one_is(self) -> None:
        # The reading lists the youngest first and stops at its cap: the unlisted ones may be young too.
        assert plan.busy_pods([1.0, 2.0], 7, GRACE) == 7
        assert plan.busy_pods([], 4, GRACE) == 4

    def test_holders_beyond_an_old_one_are_older_still(self) -> None:
        assert plan.busy_pods([1.0, 120.0], 7, GRACE) == 1


class TestAutoscaleBelowBusyPods:
    LATER = NOW + timedelta(seconds=GRACE)

    def test_keeps_the_pods_with_young_jobs(self) -> None:
        # 4 pods, 3 jobs on 3 pods, locked within the grace: target 10 says 1, the floor keeps 3.
        d = plan.autoscale(AUTO, current=4, ready_jobs=0, locked_jobs=3, busy=3, below_since=NOW, now=self.LATER)
        assert d.replicas == 3

    def test_three_jobs_on_one_pod_keep_one_pod(self) -> None:
        # Without lock ages each locked job might be on its own pod (3 kept); with them, one worker holds all 3.
        d = plan.autoscale(AUTO, current=4, ready_jobs=0, locked_jobs=3, busy=1, below_since=NOW, now=self.LATER)
        assert d.replicas == 1
        d = plan.autoscale(AUTO, current=4, ready_jobs=0, locked_jobs=3, below_since=NOW, now=self.LATER)
        assert d.replicas == 3

    def test_scales_below_pods_whose_jobs_ran_past_the_grace(self) -> None:
        # 4 pods, each with a job running for an hour (stuck or very long): they no longer pin the pool at 4;
        # the jobs are still demand, so ceil(4 / 10) = 1 pod stays.
        busy = plan.busy_pods([3600.0] * 4, 4, GRACE)
        d = plan.autoscale(AUTO, current=4, ready_jobs=0, locked_jobs=4, busy=busy, below_since=NOW, now=self.LATER)
        assert d.replicas == 1

    def test_still_waits_for_the_scale_down_delay(self) -> None:
        d = plan.autoscale(AUTO, current=4, ready_jobs=0, locked_jobs=4, busy=0, below_since=None, now=NOW)
        assert (d.replicas, d.below_since) == (4, NOW)

    def test_min_zero_keeps_a_pod_for_a_job_past_the_grace(self) -> None:
        # The livelock of issue 10 stays fixed: a running job is demand even when it is past the grace.
        auto = Autoscaling(max_replicas=3, min_replicas=0, scale_down_delay_seconds=GRACE)
        later = NOW + timedelta(hours=3)
        d = plan.autoscale(auto, current=1, ready_jobs=0, locked_jobs=1, busy=0, below_since=NOW, now=later)
        assert d.replicas == 1

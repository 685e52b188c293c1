"""Property tests of the job state machine: no illegal transition is reachable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from shared.errors import IllegalTransitionError
from shared.jobs import ALLOWED, TERMINAL, JobRecord, JobStatus, transition

statuses = st.sampled_from(list(JobStatus))


@given(st.lists(statuses, max_size=30))
@settings(max_examples=300, deadline=None)
def test_any_sequence_of_requests_follows_only_allowed_edges(requests):
    record = JobRecord(id="job", input_key="jobs/job/input.png")
    for target in requests:
        before = record
        try:
            record = transition(record, target)
        except IllegalTransitionError:
            assert target not in ALLOWED[before.status]
            assert record is before  # a refused move changes nothing
            continue
        assert target in ALLOWED[before.status]
        assert record.status is target and len(record.history) == len(before.history) + 1
    # The history replays as a path of allowed edges from "queued".
    path = [JobStatus.queued, *(event.status for event in record.history)]
    assert all(b in ALLOWED[a] for a, b in zip(path, path[1:]))
    # A terminal status is reached at most once and is the end of the path.
    terminal_positions = [i for i, s in enumerate(path) if s in TERMINAL]
    assert terminal_positions in ([], [len(path) - 1])
    if record.status in TERMINAL:
        assert record.finished_at is not None


class JobLifecycle(RuleBasedStateMachine):
    """Random interleavings of the moves workers and clients make on one job."""

    def __init__(self) -> None:
        super().__init__()
        self.record = JobRecord(id="job", input_key="jobs/job/input.png")

    def _try(self, status: JobStatus, **changes) -> None:
        try:
            self.record = transition(self.record, status, **changes)
        except IllegalTransitionError:
            assert status not in ALLOWED[self.record.status]

    @rule()
    def worker_starts(self) -> None:
        self._try(JobStatus.running, attempts=self.record.attempts + 1)

    @rule()
    def worker_succeeds(self) -> None:
        self._try(JobStatus.succeeded, outputs={"stage2/output.glb": "jobs/job/stage2/output.glb"})

    @rule()
    def worker_fails(self) -> None:
        self._try(JobStatus.failed)

    @rule()
    def client_cancels(self) -> None:
        self._try(JobStatus.canceled)

    @invariant()
    def terminal_states_are_final(self) -> None:
        if self.record.status in TERMINAL:
            for status in JobStatus:
                with pytest.raises(IllegalTransitionError):
                    transition(self.record, status)

    @invariant()
    def success_implies_it_ran(self) -> None:
        if self.record.status is JobStatus.succeeded:
            assert self.record.started_at is not None and self.record.progress == 100.0
            assert JobStatus.running in {e.status for e in self.record.history}


JobLifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=20, deadline=None)
test_job_lifecycle = JobLifecycle.TestCase

"""engine.with_retries: transient LMS failures are retried with backoff or Retry-After."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from lmsync.lms.base import LmsError, RejectedError, TransientError
from lmsync.sync.engine import with_retries


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # tenacity sleeps through time.sleep too
    return slept


def failing(errors: list[LmsError], result: int = 42) -> tuple[Callable[[], int], list[int]]:
    calls: list[int] = []

    def call() -> int:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return call, calls


def test_success_at_once_sleeps_never(waits: list[float]) -> None:
    call, calls = failing([])
    assert with_retries(call) == 42
    assert (len(calls), waits) == (1, [])


def test_backoff_doubles_between_attempts(waits: list[float]) -> None:
    call, calls = failing([TransientError("503")] * 3)
    assert with_retries(call) == 42
    assert (len(calls), waits) == (4, [0.25, 0.5, 1.0])


def test_retry_after_is_honoured_and_capped(waits: list[float]) -> None:
    errors: list[LmsError] = [
        TransientError("429", retry_after=7),
        TransientError("429", retry_after=120),
    ]
    call, _ = failing(errors)
    assert with_retries(call) == 42
    assert waits == [7, 30.0]


def test_gives_up_after_the_attempts(waits: list[float]) -> None:
    call, calls = failing([TransientError(f"503 #{i}") for i in range(9)])
    with pytest.raises(TransientError, match="503 #4"):
        with_retries(call, attempts=5)
    assert (len(calls), waits) == (5, [0.25, 0.5, 1.0, 2.0])
    single, calls = failing([TransientError("503")])
    with pytest.raises(TransientError):
        with_retries(single, attempts=1)
    assert len(calls) == 1


def test_a_rejection_is_not_retried(waits: list[float]) -> None:
    call, calls = failing([RejectedError("400 bad name")])
    with pytest.raises(RejectedError):
        with_retries(call)
    assert (len(calls), waits) == (1, [])

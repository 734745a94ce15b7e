"""The integration tests' one wait (tests.support.helpers.wait_until): a wait that runs out of time fails."""

from __future__ import annotations

import pytest

from tests.support.helpers import wait_until


def test_returns_the_first_truthy_answer() -> None:
    answers = iter([0, None, [], 7, 8])
    assert wait_until("a number", lambda: next(answers), timeout_s=5, interval_s=0) == 7


def test_a_timeout_fails_with_a_sentence() -> None:
    with pytest.raises(AssertionError, match=r"^Timed out after 0\.05 s waiting for the moon\.$"):
        wait_until("the moon", lambda: False, timeout_s=0.05, interval_s=0.01)


def test_a_callable_description_is_asked_when_time_runs_out() -> None:
    seen = [0]

    def count() -> bool:
        seen[0] += 1
        return False

    with pytest.raises(AssertionError) as info:
        wait_until(lambda: f"3 answers (saw {seen[0]})", count, timeout_s=0.05, interval_s=0.01)
    assert f"(saw {seen[0]})" in str(info.value) and seen[0] >= 2

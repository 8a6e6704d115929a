"""What the state-machine tests of a job run share: a clock each step moves on, and the
check that an action succeeded exactly when the model allows it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine

from sailplane.domain.errors import ConflictError


class RunModelMachine(RuleBasedStateMachine):
    now: datetime

    def _tick(self, seconds: int = 1) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def _expect(self, allowed: bool, call: Callable[[], Any]) -> bool:
        """Run `call`: it succeeds when `allowed`, else it is refused with a 409."""
        try:
            call()
        except ConflictError:
            assert not allowed
            return False
        assert allowed
        return True

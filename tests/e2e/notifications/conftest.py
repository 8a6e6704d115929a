"""Fixtures of the notification tests (defined in `tests/notification_support.py`)."""

from tests.notification_support import notifier, receiver, runs, smtp

__all__ = ["notifier", "receiver", "runs", "smtp"]

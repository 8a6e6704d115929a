"""`sailplane.runtime`: what the work of a run calls to talk back to Sailplane.

Standard library only, so a container without Sailplane installed can carry this file's
source. It reads `SAILPLANE_API_URL`, `SAILPLANE_RUN_TOKEN`, `SAILPLANE_RUN_ID` and
`SAILPLANE_ATTEMPT` (set by the executor for each attempt) and calls the run runtime's
routes (`/v1/runtime/...`, docs/runs-v1.md).

    from sailplane import runtime
    question = runtime.payload()["question"]
    runtime.usage("fake", "tiny", prompt_tokens=12, completion_tokens=30)
    runtime.chunk("Hello")
    runtime.checkpoint({"step": 1})
    runtime.result({"answer": "Hello"})

A daemon thread heartbeats every `SAILPLANE_HEARTBEAT_SECONDS` and flushes the buffered
small writes (`usage`, `tool_call`, `chunk`, `event`, `set_state`) at least every 50 ms;
`checkpoint`, `result`, `spawn` and `output` flush first and return once the server has
stored them. When a pause was asked, `checkpoint` saves the state and ends the process
(exit status 0): the run waits, paused, and its next attempt reads that state from
`last_checkpoint()`. With `SAILPLANE_DEBUG=1` every call is logged to stderr and
recorded as a `debug` event.

A call the server could not answer (it restarts, or is briefly unreachable: a refused or
dropped connection, a timeout, 502/503/504) is made again, after 0.2 s doubling up to 5 s
(or the server's `Retry-After`), until `SAILPLANE_RUNTIME_RETRY_SECONDS` (60; 0: never)
have passed; then it raises. A refusal (4xx) raises at once. Every write carries an id the
server records with it (`batch_id`, `checkpoint_id`, the spawn's `request_id`), so a call
made again after its answer was lost stores nothing twice. Heartbeats are never made
again: the next one comes soon.
"""

from __future__ import annotations

import atexit
import email.utils
import http.client
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

__all__ = [
    "RuntimeRefused",
    "checkpoint",
    "chunk",
    "debug_mode",
    "event",
    "get_state",
    "last_checkpoint",
    "output",
    "payload",
    "result",
    "set_state",
    "spawn",
    "tool_call",
    "usage",
    "wait_for",
]

FLUSH_SECONDS = 0.05
FLUSH_ITEMS = 200
WAIT_SLICE_SECONDS = 10.0
RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0
RETRIED_STATUSES = frozenset({502, 503, 504})  # the server restarts, or its views lag
# The server did not answer (`socket.timeout` is `TimeoutError`; `RemoteDisconnected` a
# `ConnectionError`); a `URLError` counts only when its reason is one of these too.
UNREACHABLE = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.IncompleteRead)


class RuntimeRefused(Exception):
    """Sailplane refused a call: `status` (401, 404, 409, 413, 422...) and its message."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """A `Retry-After`, in seconds or as an HTTP date: how long to wait (None: not given)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = max(0.0, when.timestamp() - time.time())
    return seconds if seconds >= 0 else None


def _pause(error: Exception, backoff: float) -> float | None:
    """How long to wait before making a failed call again; None: never again."""
    if isinstance(error, RuntimeRefused):
        if error.status not in RETRIED_STATUSES:
            return None
        return backoff if error.retry_after is None else error.retry_after
    if isinstance(error, urllib.error.URLError) and not isinstance(error.reason, OSError):
        return None  # not a network failure (an unknown URL scheme...)
    return backoff


class _Runtime:
    def __init__(self) -> None:
        self.api = (os.environ.get("SAILPLANE_API_URL") or "").rstrip("/")
        self.token = os.environ.get("SAILPLANE_RUN_TOKEN") or ""
        self.run_id = os.environ.get("SAILPLANE_RUN_ID")
        self.heartbeat_seconds = float(os.environ.get("SAILPLANE_HEARTBEAT_SECONDS") or 10)
        self.debug = os.environ.get("SAILPLANE_DEBUG") == "1"
        self.retry_seconds = float(os.environ.get("SAILPLANE_RUNTIME_RETRY_SECONDS") or 60)
        self.lock = threading.RLock()  # guards the buffer
        self.sending = threading.Lock()  # one batch on the way at a time, in order
        self.items: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}
        # A batch sent without an answer: sent again, with its id, before anything newer.
        self.unsent: dict[str, Any] | None = None
        self.oldest = 0.0  # when the oldest buffered write was made (monotonic)
        self.context: dict[str, Any] | None = None
        self.thread: threading.Thread | None = None
        self.gone = False  # the attempt is no longer current: nothing more is sent

    # --- HTTP -------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, *, retry: bool = True) -> Any:
        """The answer to one call, made again while the server cannot answer it (until the
        retry budget is spent; once only when `retry` is False)."""
        if not self.api or not self.token:
            raise RuntimeRefused(0, "not running as the work of a Sailplane run (no run token)")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.api}/v1/runtime/{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        give_up = time.monotonic() + (self.retry_seconds if retry else 0.0)
        backoff = RETRY_FIRST_SECONDS
        while True:
            try:
                return self.send(request)
            except (RuntimeRefused, *UNREACHABLE) as error:
                pause = _pause(error, backoff)
                left = give_up - time.monotonic()
                if pause is None or left <= 0:
                    raise
                if self.debug:
                    print(f"sailplane.runtime: {path}: {error}; again", file=sys.stderr, flush=True)
                time.sleep(min(pause, left))
                backoff = min(2 * backoff, RETRY_MAX_SECONDS)

    def send(self, request: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read()).get("error") or error.reason
            except (ValueError, AttributeError, OSError, http.client.HTTPException):
                message = str(error.reason)
            if error.code == 401:
                self.gone = True
            retry_after = _retry_after(error.headers.get("Retry-After"))
            raise RuntimeRefused(error.code, message, retry_after) from None

    def get_context(self) -> dict[str, Any]:
        if self.context is None:
            self.context = self.call("GET", "context")
            self.debug = self.debug or bool(self.context.get("debug"))
        return self.context

    # --- the buffer ---------------------------------------------------------------------------

    def buffer(
        self, item: dict[str, Any] | None = None, state: dict[str, Any] | None = None
    ) -> None:
        self.start()
        with self.lock:
            if not self.items and not self.state:
                self.oldest = time.monotonic()
            if item is not None:
                self.items.append(item)
            self.state.update(state or {})
            full = len(self.items) >= FLUSH_ITEMS
        if full:
            self.flush()

    def flush(self, *, retry: bool = True) -> None:
        """Send the buffered writes as one batch, with an id kept until it is answered: a
        batch that got no answer (OSError, 502/503/504) is sent again, with the same id, by
        the next flush, before the writes buffered since. `retry` False (the daemon's
        rounds): one try, and none while another thread is sending."""
        if not self.sending.acquire(blocking=retry):
            return
        try:
            if self.unsent is not None:
                self.send_unsent(retry)
            with self.lock:
                if not self.items and not self.state:
                    return
                self.unsent = {
                    "batch_id": uuid.uuid4().hex,
                    "items": self.items,
                    "state": self.state,
                }
                self.items, self.state = [], {}
            self.send_unsent(retry)
        finally:
            self.sending.release()

    def send_unsent(self, retry: bool) -> None:
        if self.gone:
            return
        try:
            self.call("POST", "batch", self.unsent, retry=retry)
        except RuntimeRefused as refused:
            if refused.status not in RETRIED_STATUSES:
                self.unsent = None  # refused for what it holds: it is never sent again
            raise
        self.unsent = None

    # --- the daemon thread --------------------------------------------------------------------

    def start(self) -> None:
        if self.thread is None and self.token:
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(
                        target=self.loop, name="sailplane-runtime", daemon=True
                    )
                    self.thread.start()
                    atexit.register(self.at_exit)

    def loop(self) -> None:
        last_beat = 0.0
        while not self.gone:
            now = time.monotonic()
            try:
                if now - last_beat >= self.heartbeat_seconds:
                    last_beat = now
                    signals = self.call("POST", "heartbeat", retry=False)
                    self.debug = self.debug or bool(signals.get("debug"))
                with self.lock:
                    due = self.unsent is not None or (
                        (self.items or self.state) and now - self.oldest >= FLUSH_SECONDS
                    )
                if due:
                    self.flush(retry=False)
            except Exception as error:  # the next round tries again
                if self.debug:
                    print(f"sailplane.runtime: {error}", file=sys.stderr, flush=True)
            time.sleep(FLUSH_SECONDS / 2)

    def at_exit(self) -> None:
        try:
            self.flush()
        except Exception as error:
            print(f"sailplane.runtime: the last writes were not sent: {error}", file=sys.stderr)

    def trace(self, name: str, **arguments: Any) -> None:
        """In debug mode, every call is logged and recorded as a debug event."""
        if not self.debug:
            return
        shown = ", ".join(f"{k}={v!r}"[:200] for k, v in arguments.items())
        print(f"sailplane.runtime: {name}({shown})", file=sys.stderr, flush=True)
        self.buffer(
            {
                "kind": "event",
                "type": "runtime.call",
                "level": "debug",
                "message": f"{name}({shown})"[:1000],
                "data": None,
            }
        )


_runtime = _Runtime()


def payload() -> dict[str, Any] | None:
    """The run's payload (a JSON object, or None)."""
    _runtime.trace("payload")
    return _runtime.get_context()["payload"]


def result(value: Any) -> None:
    """The run's result (at most 64 KiB as JSON); stored when this returns."""
    _runtime.trace("result", value=value)
    _runtime.flush()
    _runtime.call("POST", "result", {"value": value})


def checkpoint(state: Any) -> int:
    """Save `state`; its sequence number once stored. When a pause was asked, the process
    ends here (exit status 0) and a later attempt reads `state` from `last_checkpoint()`."""
    _runtime.trace("checkpoint", state=state)
    _runtime.flush()
    saved = _runtime.call("POST", "checkpoint", {"checkpoint_id": uuid.uuid4().hex, "state": state})
    context = _runtime.get_context()
    context["last_checkpoint"] = state
    if saved["stop"]:
        _runtime.gone = True
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return int(saved["sequence"])


def last_checkpoint() -> Any:
    """The state of the run's latest checkpoint (of any attempt), or None."""
    _runtime.trace("last_checkpoint")
    return _runtime.get_context()["last_checkpoint"]


def usage(
    provider: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost_microusd: int | None = None,
) -> None:
    """One model call's usage (buffered)."""
    _runtime.trace("usage", provider=provider, model=model)
    _runtime.buffer(
        {
            "kind": "usage",
            "provider": provider,
            "model": model,
            "prompt_tokens": int(prompt_tokens),
            "completion_tokens": int(completion_tokens),
            "cost_microusd": None if cost_microusd is None else int(cost_microusd),
        }
    )


def tool_call(
    tool_name: str, input: Any, output: Any, duration_ms: int, status: str = "succeeded"
) -> None:
    """One tool call (buffered)."""
    _runtime.trace("tool_call", tool_name=tool_name)
    _runtime.buffer(
        {
            "kind": "tool_call",
            "tool_name": tool_name,
            "input": input,
            "output": output,
            "duration_ms": int(duration_ms),
            "status": status,
        }
    )


def output(key: str, value: Any, schema: dict[str, Any] | None = None) -> None:
    """A structured output, checked against `schema` (a JSON Schema) by the server; raises
    `RuntimeRefused` (422 with the validation message, 413 when too large)."""
    _runtime.trace("output", key=key)
    _runtime.flush()
    item = {"kind": "output", "key": key, "value": value, "schema": schema}
    _runtime.call("POST", "batch", {"batch_id": uuid.uuid4().hex, "items": [item]})


def chunk(text: str) -> None:
    """A piece of streamed text (buffered; readers see it within about 50 ms)."""
    _runtime.buffer({"kind": "chunk", "text": str(text)})


def set_state(key: str, value: Any) -> None:
    """Set a state key of the run (buffered)."""
    _runtime.trace("set_state", key=key)
    _runtime.buffer(state={key: value})


def get_state(key: str) -> Any:
    """A state key's value, or None when it is not set."""
    _runtime.trace("get_state", key=key)
    _runtime.flush()
    try:
        return _runtime.call("GET", f"state/{urllib.request.quote(key, safe='')}")["value"]
    except RuntimeRefused as refused:
        if refused.status == 404:
            return None
        raise


def event(type: str, message: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
    """An event of the work (buffered): `level` is debug, info, warning or error."""
    _runtime.buffer(
        {"kind": "event", "type": type, "message": message, "level": level, "data": data}
    )


def spawn(job_id: str, payload: dict[str, Any] | None = None, **run_fields: Any) -> str:
    """Start a child run of `job_id` (`parent_run_id` = this run, `triggered_by: spawn`);
    its id, once it is stored. `run_fields`: tags, metadata, priority, concurrency_key,
    debug_mode, idempotency_key (without one, a call made again after its answer was lost
    answers the same child)."""
    _runtime.trace("spawn", job_id=job_id)
    _runtime.flush()
    request = {"job_id": job_id, "payload": payload, "request_id": uuid.uuid4().hex}
    return str(_runtime.call("POST", "spawn", {**request, **run_fields})["run_id"])


def wait_for(run_ids: list[str] | str, timeout_s: float | None = None) -> dict[str, dict[str, Any]]:
    """Wait until the child runs finish (this run shows `waiting` meanwhile): per run id,
    `{status, result, error}`. Raises TimeoutError after `timeout_s` seconds."""
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    _runtime.trace("wait_for", run_ids=ids, timeout_s=timeout_s)
    _runtime.flush()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        left = WAIT_SLICE_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
        waited = _runtime.call(
            "POST", "wait", {"run_ids": ids, "timeout_s": min(left, WAIT_SLICE_SECONDS)}
        )
        if waited["done"]:
            return {
                r["id"]: {k: r[k] for k in ("status", "result", "error")} for r in waited["runs"]
            }
        if deadline is not None and time.monotonic() >= deadline:
            _runtime.call("POST", "continue")
            raise TimeoutError(f"runs {', '.join(ids)} did not finish within {timeout_s} s")


def debug_mode() -> bool:
    """Whether the run is in debug mode."""
    return bool(_runtime.debug or _runtime.get_context().get("debug"))


# Heartbeats start as soon as the work imports this module.
_runtime.start()

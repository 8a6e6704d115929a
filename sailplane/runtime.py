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
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
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


class RuntimeRefused(Exception):
    """Sailplane refused a call: `status` (401, 404, 409, 413, 422...) and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class _Runtime:
    def __init__(self) -> None:
        self.api = (os.environ.get("SAILPLANE_API_URL") or "").rstrip("/")
        self.token = os.environ.get("SAILPLANE_RUN_TOKEN") or ""
        self.run_id = os.environ.get("SAILPLANE_RUN_ID")
        self.heartbeat_seconds = float(os.environ.get("SAILPLANE_HEARTBEAT_SECONDS") or 10)
        self.debug = os.environ.get("SAILPLANE_DEBUG") == "1"
        self.lock = threading.RLock()
        self.items: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}
        self.oldest = 0.0  # when the oldest buffered write was made (monotonic)
        self.context: dict[str, Any] | None = None
        self.thread: threading.Thread | None = None
        self.gone = False  # the attempt is no longer current: nothing more is sent

    # --- HTTP -------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> Any:
        if not self.api or not self.token:
            raise RuntimeRefused(0, "not running as the work of a Sailplane run (no run token)")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.api}/v1/runtime/{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read()).get("error") or error.reason
            except (ValueError, AttributeError):
                message = str(error.reason)
            if error.code == 401:
                self.gone = True
            raise RuntimeRefused(error.code, message) from None

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

    def flush(self) -> None:
        with self.lock:
            if self.gone or (not self.items and not self.state):
                return
            items, state = self.items, self.state
            self.items, self.state = [], {}
            try:
                self.call("POST", "batch", {"items": items, "state": state})
            except RuntimeRefused:
                raise
            except OSError:
                # The server is not reachable now: keep the writes for the next flush.
                self.items, self.state = items + self.items, {**state, **self.state}
                raise

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
                    signals = self.call("POST", "heartbeat")
                    self.debug = self.debug or bool(signals.get("debug"))
                with self.lock:
                    due = (self.items or self.state) and now - self.oldest >= FLUSH_SECONDS
                if due:
                    self.flush()
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
    saved = _runtime.call("POST", "checkpoint", {"state": state})
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
    _runtime.call("POST", "batch", {"items": [item]})


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
    debug_mode."""
    _runtime.trace("spawn", job_id=job_id)
    _runtime.flush()
    return str(
        _runtime.call("POST", "spawn", {"job_id": job_id, "payload": payload, **run_fields})[
            "run_id"
        ]
    )


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

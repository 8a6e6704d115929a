"""The run runtime over HTTP: the work talks back (`/v1/runtime/...`), people read what it
reported (`/v1/runs/{id}/checkpoints`, `usage`, `tool-calls`, `outputs`, `state`, `debug`,
`debug-bundle`, `stream/chunks`, `children`).

`/v1/runtime/...` takes only a run token (`SAILPLANE_RUN_TOKEN`, minted per attempt by the
dispatcher), and only while its attempt is the run's current one, dispatched or executing
(401 `attempt_not_current` afterwards); a member's or service account's token there is
403, and a run token anywhere else is 403 (`http/auth.py`). Telemetry goes to tables
outside the event log (`RunsContext.telemetry`); what changes the run (its result, a
spawn, waiting for children, a pause at a checkpoint) is a use case of `Runs`. Each item
is at most `max_item_bytes` (default 1 MiB) as JSON, else 413. docs/runs-v1.md has the
routes and the rules; `sailplane/runtime.py` is their client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any, Literal, TypeGuard

import anyio
import jsonschema
import msgspec
from litestar import Controller, Request, Router
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage

from sailplane.contexts import RunsContext
from sailplane.domain.errors import (
    InvalidValueError,
    NotAuthenticatedError,
    NotFoundError,
    PayloadTooLargeError,
)
from sailplane.domain.runs import ACTIVE, TERMINAL, RunOptions
from sailplane.domain.runtime import MAX_RESULT_BYTES, oversized
from sailplane.http.auth import (
    RUN_TOKEN_ROUTE,
    Caller,
    Principal,
    RunPrincipal,
    RunsDep,
    require_access,
    requires,
)
from sailplane.http.errors import exception_handlers
from sailplane.http.routes import get, post
from sailplane.http.run_options import Key, Priority
from sailplane.http.runs_v1 import (
    RUN,
    VIEW,
    QueueRun,
    RunEvent,
    RunQueueError,
    _queue_error,
    _visible,
    event_shape,
    run_shape,
    run_shapes,
)
from sailplane.http.shapes import iso

MAX_ITEMS = 1000
MAX_WAIT_SECONDS = 10.0  # one wait request holds at most this long; the client asks again
WAIT_POLL_SECONDS = 0.1
CHUNK_POLL_SECONDS = 0.05
ITEM_LIMIT_SETTING = "SAILPLANE_RUNTIME_MAX_ITEM_BYTES"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# The id the work gives a write, so that sending it again (its answer was lost) stores it once.
WriteId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9_-]+$")]
Count = Annotated[int, msgspec.Meta(ge=0, le=10**12)]
RUNTIME = {RUN_TOKEN_ROUTE: True}


# --- what the work sends -------------------------------------------------------------------


class UsageItem(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag="usage", tag_field="kind"
):
    provider: Name
    model: Name
    prompt_tokens: Count
    completion_tokens: Count
    cost_microusd: Count | None = None


class ToolCallItem(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag="tool_call", tag_field="kind"
):
    tool_name: Name
    input: Any = None
    output: Any = None
    duration_ms: Count = 0
    status: Name = "succeeded"


class OutputItem(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag="output", tag_field="kind"
):
    key: Name
    value: Any = None
    schema: dict[str, Any] | None = None


class ChunkItem(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag="chunk", tag_field="kind"
):
    text: str


class EventItem(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag="event", tag_field="kind"
):
    type: Name
    message: str = ""
    level: Literal["debug", "info", "warning", "error"] = "info"
    data: dict[str, Any] | None = None


Item = UsageItem | ToolCallItem | OutputItem | ChunkItem | EventItem


class Batch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Buffered writes of the work: items in order, and state keys to set; `batch_id`:
    a batch the run has stored already stores nothing (its answer is the first one's)."""

    batch_id: WriteId | None = None
    items: Annotated[list[Item], msgspec.Meta(max_length=MAX_ITEMS)] = []
    state: Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_ITEMS)] | None = None


class Checkpoint(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    state: Any
    checkpoint_id: WriteId | None = None  # stored once: a repeat answers the first's sequence


class Result(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    value: Any


class Spawn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    job_id: Name
    payload: dict[str, Any] | None = None
    tags: dict[str, str] | None = None
    metadata: dict[str, str] | None = None
    priority: Priority = 0
    concurrency_key: Key | None = None
    debug_mode: bool = False
    idempotency_key: Key | None = None
    request_id: WriteId | None = None

    def child_key(self, work: RunPrincipal) -> str | None:
        """The child's idempotency key: the work's own, else one of the spawn's parent,
        attempt and request id, so that the same spawn sent again answers the same child."""
        if self.idempotency_key is not None or self.request_id is None:
            return self.idempotency_key
        return f"spawn:{work.run_id}:{work.attempt}:{self.request_id}"


class Wait(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    run_ids: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]
    timeout_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT_SECONDS)] = MAX_WAIT_SECONDS


class DebugSetting(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool


# --- what the runtime answers --------------------------------------------------------------


class RuntimeContext(msgspec.Struct, kw_only=True):
    run_id: str
    attempt: int
    job_id: str
    payload: dict[str, Any] | None
    last_checkpoint: Any
    debug: bool
    heartbeat_seconds: float


class Signals(msgspec.Struct, kw_only=True):
    """What the work should do: stop (cancelled), pause at its next checkpoint, debug."""

    cancel: bool
    pause: bool
    debug: bool


class Written(msgspec.Struct, kw_only=True):
    count: int


class Checkpointed(msgspec.Struct, kw_only=True):
    sequence: int
    stop: bool  # a pause was asked: the attempt ends here; the run resumes from this state


class Spawned(msgspec.Struct, kw_only=True):
    run_id: str


class ChildStatus(msgspec.Struct, kw_only=True):
    id: str
    status: str
    result: Any
    error: str | None


class Waited(msgspec.Struct, kw_only=True):
    done: bool
    runs: list[ChildStatus]


class StateEntry(msgspec.Struct, kw_only=True):
    key: str
    value: Any
    updated_at: str | None


# --- seed-003 read shapes ------------------------------------------------------------------


class RunCheckpoint(msgspec.Struct, kw_only=True):
    id: str
    run_id: str
    sequence: int
    source: str
    state: Any
    created_at: str | None


class RunUsage(msgspec.Struct, kw_only=True):
    id: str
    run_id: str
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_microusd: int | None
    created_at: str | None


class RunToolCall(msgspec.Struct, kw_only=True):
    id: str
    run_id: str
    tool_name: str
    input: Any
    output: Any
    duration_ms: int
    status: str
    created_at: str | None


class RunOutput(msgspec.Struct, kw_only=True):
    id: str
    run_id: str
    output_key: str
    schema: dict[str, Any] | None
    value: Any
    created_at: str | None


class RunChunk(msgspec.Struct, kw_only=True):
    id: str
    run_id: str
    index: int
    text: str
    created_at: str | None


class DebugBundle(msgspec.Struct, kw_only=True):
    run: QueueRun
    events: list[RunEvent]
    checkpoints: list[RunCheckpoint]
    usage: list[RunUsage]
    tool_calls: list[RunToolCall]
    outputs: list[RunOutput]
    state: list[StateEntry]
    chunks: list[RunChunk]


def _checkpoint(run_id: str, row: dict[str, Any]) -> RunCheckpoint:
    return RunCheckpoint(
        id=str(row["seq"]),
        run_id=run_id,
        sequence=row["sequence"],
        source=f"attempt {row['attempt']}",
        state=row["body"]["state"],
        created_at=iso(row["at"]),
    )


def _usage(run_id: str, row: dict[str, Any]) -> RunUsage:
    body = row["body"]
    return RunUsage(
        id=str(row["seq"]),
        run_id=run_id,
        provider=body["provider"],
        model=body["model"],
        prompt_tokens=body["prompt_tokens"],
        completion_tokens=body["completion_tokens"],
        total_tokens=body["prompt_tokens"] + body["completion_tokens"],
        cost_microusd=body.get("cost_microusd"),
        created_at=iso(row["at"]),
    )


def _tool_call(run_id: str, row: dict[str, Any]) -> RunToolCall:
    body = row["body"]
    return RunToolCall(
        id=str(row["seq"]),
        run_id=run_id,
        tool_name=body["tool_name"],
        input=body.get("input"),
        output=body.get("output"),
        duration_ms=body.get("duration_ms", 0),
        status=body.get("status", "succeeded"),
        created_at=iso(row["at"]),
    )


def _output(run_id: str, row: dict[str, Any]) -> RunOutput:
    body = row["body"]
    return RunOutput(
        id=str(row["seq"]),
        run_id=run_id,
        output_key=body["key"],
        schema=body.get("schema"),
        value=body.get("value"),
        created_at=iso(row["at"]),
    )


def _chunk(run_id: str, row: dict[str, Any]) -> RunChunk:
    return RunChunk(
        id=str(row["seq"]),
        run_id=run_id,
        index=row["sequence"],
        text=row["body"]["text"],
        created_at=iso(row["at"]),
    )


def _work_event(run_id: str, row: dict[str, Any]) -> RunEvent:
    body = row["body"]
    return RunEvent(
        id=f"w{row['seq']}",
        run_id=run_id,
        type=body["type"],
        level=body.get("level", "info"),
        message=body.get("message"),
        data=body.get("data") or {},
        created_at=iso(row["at"]),
    )


def _state(row: dict[str, Any]) -> StateEntry:
    return StateEntry(key=row["key"], value=row["value"], updated_at=iso(row["updated_at"]))


# --- the run token's run --------------------------------------------------------------------


def _work_of(request: Request[Any, Any, Any]) -> RunPrincipal:
    principal = request.user
    if not isinstance(principal, RunPrincipal):  # the middleware lets only run tokens here
        raise NotAuthenticatedError("A run token is required.", code="invalid_token")
    return principal


def _current(runs: RunsContext, work: RunPrincipal) -> dict[str, Any]:
    """The run, while the token's attempt is its current one and it executes (else 401)."""
    return _current_row(_run_row(runs, work), work)


def _is_current(row: dict[str, Any] | None, work: RunPrincipal) -> TypeGuard[dict[str, Any]]:
    return row is not None and row["attempt"] == work.attempt and row["status"] in ACTIVE


def _run_row(runs: RunsContext, work: RunPrincipal) -> dict[str, Any] | None:
    """The work's run as the views show it. When they do not show the token's attempt
    executing, they are read again once they hold the log as it stands now: a warm child's
    first call comes within milliseconds of its dispatch, often before the views have it,
    and must not be refused for the views' lag (503 when they do not catch up in time)."""
    row = runs.view.run_by_id(work.organization_id, work.run_id)
    if not _is_current(row, work):
        runs.wait_for_views(runs.commands.event_log.head())
        row = runs.view.run_by_id(work.organization_id, work.run_id)
    return row


def _current_row(row: dict[str, Any] | None, work: RunPrincipal) -> dict[str, Any]:
    """`row`, the work's run as read, while its attempt is current and executing (else 401)."""
    if not _is_current(row, work):
        raise NotAuthenticatedError(
            f"This run token is for attempt {work.attempt} of run {work.run_id}, which is no "
            "longer executing; it cannot act any more.",
            code="attempt_not_current",
        )
    return row


def _record(runs: RunsContext, use_case: Any, work: RunPrincipal, *args: Any) -> None:
    """A use case of the work's attempt, read back (read-your-writes)."""
    runs.wait_for_views(use_case(work.run_id, work.attempt, *args, by=work.actor))


def _children(runs: RunsContext, work: RunPrincipal, wanted: list[str]) -> dict[str, Any]:
    """The runs the work's run spawned, by id (404 naming any wanted one it did not)."""
    children = {c["id"]: c for c in runs.view.children(work.organization_id, work.run_id)}
    missing = [i for i in wanted if i not in children]
    if missing:
        raise NotFoundError(
            f"Run(s) {', '.join(missing)} were not spawned by this run.", code="run_not_found"
        )
    return children


def _check_sizes(
    items: list[tuple[str, Any]], limit: int, *, hint: str, code: str = "item_too_large"
) -> None:
    """413, and nothing of the request stored, when an item is over `limit` as JSON; `hint`
    says where the limit comes from or what to do instead."""
    over = oversized(items, limit)
    if over is not None:
        kind, size = over
        raise PayloadTooLargeError(
            f"A {kind.replace('_', ' ')} of {size} bytes is over the limit of {limit} bytes per "
            f"item ({hint}); nothing of this request was stored.",
            code=code,
        )


def _validated(item: OutputItem) -> None:
    if item.schema is None:
        return
    try:
        jsonschema.validate(item.value, item.schema)
    except jsonschema.SchemaError as error:
        raise InvalidValueError(
            f"The schema of output {item.key!r} is not a valid JSON Schema: {error.message}",
            field="schema",
            code="invalid_output_schema",
        ) from None
    except jsonschema.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(the value)"
        raise InvalidValueError(
            f"Output {item.key!r} does not match its schema at {where}: {error.message}",
            field="value",
            code="output_schema_mismatch",
        ) from None


def _body(item: Item) -> tuple[str, dict[str, Any]]:
    body = msgspec.to_builtins(item)
    kind = body.pop("kind")
    return kind, body


class RuntimeController(Controller):
    """What the work of an attempt reports; every route takes the attempt's run token."""

    path = "/runtime"
    tags = ["runtime"]
    opt = RUNTIME

    @get("/context", operation_id="RuntimeContext")
    def context(self, runs: RunsDep, request: Request[Any, Any, Any]) -> RuntimeContext:
        """The attempt's run: payload, last checkpoint (of any attempt), debug flag."""
        work = _work_of(request)
        row = _current(runs, work)
        last = runs.telemetry.last(work.run_id, "checkpoint")
        return RuntimeContext(
            run_id=work.run_id,
            attempt=work.attempt,
            job_id=row["job_id"],
            payload=row["payload"],
            last_checkpoint=None if last is None else last["body"]["state"],
            debug=bool(row["options"].get("debug_mode")),
            heartbeat_seconds=runs.runtime.heartbeat_seconds,
        )

    @post("/heartbeat", operation_id="RuntimeHeartbeat", status_code=200)
    def heartbeat(self, runs: RunsDep, request: Request[Any, Any, Any]) -> Signals:
        """The work is alive; the answer says whether to stop, pause or debug."""
        work = _work_of(request)
        row = _run_row(runs, work)
        if row is not None and row["attempt"] == work.attempt and row["status"] == "cancelled":
            return Signals(cancel=True, pause=False, debug=False)
        row = _current_row(row, work)
        runs.telemetry.heartbeat(work.run_id, work.attempt)
        return Signals(
            cancel=False,
            pause=row["status_reason"] == "pause_requested",
            debug=bool(row["options"].get("debug_mode")),
        )

    @post("/batch", operation_id="RuntimeBatch", status_code=200)
    def batch(
        self, runs: RunsDep, request: Request[Any, Any, Any], data: JSONBody[Batch]
    ) -> Written:
        """Events, usage rows, tool calls, outputs and chunks in order, and state keys; all
        or nothing (an output that does not match its schema: 422; an item over the size
        limit: 413)."""
        work = _work_of(request)
        _current(runs, work)
        for item in data.items:
            if isinstance(item, OutputItem):
                _validated(item)
        items = [_body(i) for i in data.items]
        state = data.state or {}
        _check_sizes(
            items + [("state value", v) for v in state.values()],
            runs.runtime.max_item_bytes,
            hint=ITEM_LIMIT_SETTING,
        )
        runs.telemetry.append(work.run_id, work.attempt, items, state, batch_id=data.batch_id)
        return Written(count=len(items) + len(state))

    @post("/checkpoint", operation_id="RuntimeCheckpoint", status_code=200)
    def checkpoint(
        self, runs: RunsDep, request: Request[Any, Any, Any], data: JSONBody[Checkpoint]
    ) -> Checkpointed:
        """Save a checkpoint (durable when answered). When a pause was asked, the attempt
        ends here (`stop`): the run waits, paused, and resumes from this state. The same
        `checkpoint_id` again stores nothing and answers as the first time, also once that
        one ended the attempt."""
        work = _work_of(request)
        row = _run_row(runs, work)
        stored = None
        if data.checkpoint_id is not None and not _is_current(row, work):
            stored = runs.telemetry.stored(work.run_id, work.attempt, data.checkpoint_id)
        if stored:  # the first one ended the attempt (a pause); its answer was lost
            seq, stop = stored[0], True
        else:
            _current_row(row, work)
            _check_sizes(
                [("checkpoint", data.state)],
                runs.runtime.max_item_bytes,
                hint=ITEM_LIMIT_SETTING,
            )
            (seq,) = runs.telemetry.append(
                work.run_id,
                work.attempt,
                [("checkpoint", {"state": data.state})],
                batch_id=data.checkpoint_id,
            )
            stop, position = runs.commands.suspend_run(work.run_id, work.attempt, by=work.actor)
            if stop:
                runs.wait_for_views(position)
        (saved,) = runs.telemetry.rows(work.run_id, "checkpoint", after=seq - 1, limit=1)
        return Checkpointed(sequence=saved["sequence"], stop=stop)

    @post("/result", operation_id="RuntimeResult", status_code=200)
    def result(
        self, runs: RunsDep, request: Request[Any, Any, Any], data: JSONBody[Result]
    ) -> Written:
        """The run's result (an event: at most 64 KiB as JSON); durable when answered."""
        work = _work_of(request)
        _current(runs, work)
        _check_sizes(
            [("result", data.value)],
            MAX_RESULT_BYTES,
            hint="a result is an event: report large data with output() instead",
            code="result_too_large",
        )
        # Durable once committed; no wait for the views: the work reads nothing back, and
        # the run's end comes later in the log, so a view never shows it ended without it
        # (and a slow view cannot turn a stored result into a 503 the work would retry).
        runs.commands.report_result(work.run_id, work.attempt, data.value, by=work.actor)
        return Written(count=1)

    @get("/state/{key:str}", operation_id="RuntimeGetState")
    def get_state(
        self, runs: RunsDep, request: Request[Any, Any, Any], key: FromPath[str]
    ) -> StateEntry:
        """One state key of the run (404 when it is not set)."""
        work = _work_of(request)
        _current(runs, work)
        found = runs.telemetry.state(work.run_id, key)
        if not found:
            raise NotFoundError(f"State key {key!r} is not set.", code="state_key_not_found")
        return _state(found[0])

    @post("/spawn", operation_id="RuntimeSpawn", status_code=201)
    def spawn(
        self, runs: RunsDep, request: Request[Any, Any, Any], data: JSONBody[Spawn]
    ) -> Spawned:
        """A child run of `job_id` (same organization), `triggered_by: spawn`; durable when
        answered. A spawn sent again (same `request_id` or idempotency key) answers the
        child made the first time and makes none."""
        work = _work_of(request)
        _current(runs, work)
        options = RunOptions(
            payload=data.payload,
            tags=data.tags or {},
            metadata=data.metadata or {},
            priority=data.priority,
            concurrency_key=data.concurrency_key,
            idempotency_key=data.child_key(work),
            debug_mode=data.debug_mode,
        )
        child_id, position = runs.commands.spawn_run(
            work.run_id, work.attempt, data.job_id, options, by=work.actor
        )
        runs.wait_for_created(position)
        return Spawned(run_id=child_id)

    @post("/wait", operation_id="RuntimeWait", status_code=200)
    async def wait(
        self, runs: RunsDep, request: Request[Any, Any, Any], data: JSONBody[Wait]
    ) -> Waited:
        """Wait (at most `timeout_s`, 10 s) for child runs to finish. Meanwhile the run is
        `waiting`; once all have finished it is `executing` again. The wait holds no worker
        thread: the children are looked at every 100 ms from the event loop."""
        work = _work_of(request)
        row = await anyio.to_thread.run_sync(_current, runs, work)
        wanted = list(dict.fromkeys(data.run_ids))
        if row["status_reason"] != "waiting_for_children":
            await anyio.to_thread.run_sync(
                _record, runs, runs.commands.await_children, work, wanted
            )
        deadline = time.monotonic() + data.timeout_s
        while True:
            children = await anyio.to_thread.run_sync(_children, runs, work, wanted)
            done = all(children[i]["status"] in TERMINAL for i in wanted)
            if done or time.monotonic() >= deadline:
                break
            await asyncio.sleep(WAIT_POLL_SECONDS)
        if done:
            await anyio.to_thread.run_sync(_record, runs, runs.commands.continue_work, work)
        now = runs.clock()
        return Waited(
            done=done,
            runs=[
                ChildStatus(
                    id=i,
                    status=(shown := run_shape(children[i], now)).status,
                    result=shown.result,
                    error=shown.error,
                )
                for i in wanted
            ],
        )

    @post("/continue", operation_id="RuntimeContinue", status_code=200)
    def continue_work(self, runs: RunsDep, request: Request[Any, Any, Any]) -> Written:
        """Stop waiting (a `wait_for` that timed out): the run is `executing` again."""
        work = _work_of(request)
        _current(runs, work)
        _record(runs, runs.commands.continue_work, work)
        return Written(count=0)


# --- reading what the work reported (people, with the run's view permission) ----------------


# Each kind of item the work reports, and its seed-003 shape.
SHAPES: dict[str, Any] = {
    "checkpoint": _checkpoint,
    "usage": _usage,
    "tool_call": _tool_call,
    "output": _output,
    "chunk": _chunk,
    "event": _work_event,
}
MAX_LISTED = 100_000


def _reported(runs: RunsContext, run_id: str, kind: str) -> list[Any]:
    """The run's items of `kind` in order, in their shape."""
    shape = SHAPES[kind]
    return [shape(run_id, r) for r in runs.telemetry.rows(run_id, kind, limit=MAX_LISTED)]


def _visible_reported(runs: RunsContext, principal: Principal, run_id: str, kind: str) -> list[Any]:
    _visible(runs, principal, run_id)
    return _reported(runs, run_id, kind)


class RunTelemetryController(Controller):
    path = "/runs"
    tags = ["runs-v1"]

    @get("/{run_id:str}/children", operation_id="ListRunChildren", guards=[requires(VIEW)])
    def children(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> list[QueueRun]:
        """The runs this run spawned, oldest first."""
        _visible(runs, principal, run_id)
        return run_shapes(runs, runs.view.children(principal.organization_id, run_id))

    @get("/{run_id:str}/checkpoints", operation_id="ListRunCheckpoints", guards=[requires(VIEW)])
    def checkpoints(
        self, runs: RunsDep, principal: Caller, run_id: FromPath[str]
    ) -> list[RunCheckpoint]:
        """The run's checkpoints in order (over all its attempts)."""
        return _visible_reported(runs, principal, run_id, "checkpoint")

    @get("/{run_id:str}/usage", operation_id="ListRunUsage", guards=[requires(VIEW)])
    def usage(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> list[RunUsage]:
        """The model usage the run reported, one row per call."""
        return _visible_reported(runs, principal, run_id, "usage")

    @get("/{run_id:str}/tool-calls", operation_id="ListRunToolCalls", guards=[requires(VIEW)])
    def tool_calls(
        self, runs: RunsDep, principal: Caller, run_id: FromPath[str]
    ) -> list[RunToolCall]:
        """The tool calls the run reported, in order."""
        return _visible_reported(runs, principal, run_id, "tool_call")

    @get("/{run_id:str}/outputs", operation_id="ListRunOutputs", guards=[requires(VIEW)])
    def outputs(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> list[RunOutput]:
        """The structured outputs the run reported, with their schemas."""
        return _visible_reported(runs, principal, run_id, "output")

    @get("/{run_id:str}/state", operation_id="ListRunState", guards=[requires(VIEW)])
    def state(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> list[StateEntry]:
        """The run's state: `{key, value, updated_at}` per key, by key."""
        _visible(runs, principal, run_id)
        return [_state(r) for r in runs.telemetry.state(run_id)]

    @get("/{run_id:str}/debug", operation_id="DescribeRunDebugMode", guards=[requires(VIEW)])
    def debug(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> DebugSetting:
        """Whether the run is in debug mode."""
        row = _visible(runs, principal, run_id)
        return DebugSetting(enabled=bool(row["options"].get("debug_mode")))

    @post(
        "/{run_id:str}/debug",
        operation_id="SetRunDebugMode",
        status_code=200,
        guards=[requires(VIEW)],
    )
    def set_debug(
        self, runs: RunsDep, principal: Caller, run_id: FromPath[str], data: JSONBody[DebugSetting]
    ) -> DebugSetting:
        """Turn debug mode on or off: the work of the next attempt gets SAILPLANE_DEBUG=1, and
        an executing one sees the flag at its next heartbeat."""
        row = _visible(runs, principal, run_id)
        require_access(principal, RUN, granted_team_ids=row["team_ids"])
        position = runs.commands.set_debug_mode(
            row["job_id"], run_id, data.enabled, by=principal.actor
        )
        if position:
            runs.wait_for_views(position)
        return DebugSetting(enabled=data.enabled)

    @get(
        "/{run_id:str}/debug-bundle", operation_id="DescribeRunDebugBundle", guards=[requires(VIEW)]
    )
    def debug_bundle(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> DebugBundle:
        """Everything about the run in one document: the run, its events (transitions and
        the work's own), checkpoints, usage, tool calls, outputs, state and chunks."""
        return _bundle(runs, principal, run_id)

    @get("/{run_id:str}/stream/chunks", operation_id="StreamRunChunks", guards=[requires(VIEW)])
    async def stream_chunks(
        self,
        runs: RunsDep,
        principal: Caller,
        request: Request[Any, Any, Any],
        run_id: FromPath[str],
    ) -> ServerSentEvent:
        """Server-Sent Events of the run's chunks (`event: chunk`, `id` = the chunk's id,
        `data` = `{id, run_id, index, text, created_at}`): the stored ones in order, then
        live ones; ends once the run has finished. `Last-Event-ID` resumes after that id."""
        await anyio.to_thread.run_sync(_visible, runs, principal, run_id)
        seen = request.headers.get("last-event-id") or "0"
        after = int(seen) if seen.isdigit() else 0
        return ServerSentEvent(
            _chunks_until_finished(runs, principal.organization_id, run_id, after)
        )


def _bundle(runs: RunsContext, principal: Principal, run_id: str) -> DebugBundle:
    row = _visible(runs, principal, run_id)
    transitions = [
        event_shape(r)
        for r in runs.view.events(principal.organization_id, run_id, after=0, limit=100_000)
    ]
    reported = _reported(runs, run_id, "event")
    return DebugBundle(
        run=run_shapes(runs, [row])[0],
        events=sorted(transitions + reported, key=lambda e: e.created_at or ""),
        checkpoints=_reported(runs, run_id, "checkpoint"),
        usage=_reported(runs, run_id, "usage"),
        tool_calls=_reported(runs, run_id, "tool_call"),
        outputs=_reported(runs, run_id, "output"),
        state=[_state(r) for r in runs.telemetry.state(run_id)],
        chunks=_reported(runs, run_id, "chunk"),
    )


async def _chunks_until_finished(
    runs: RunsContext, organization_id: str, run_id: str, after: int
) -> AsyncIterator[ServerSentEventMessage]:
    while True:
        # Whether the run had finished is read before the chunks: a chunk written before
        # the end is then always sent.
        run = await anyio.to_thread.run_sync(partial(runs.view.run_by_id, organization_id, run_id))
        rows = await anyio.to_thread.run_sync(
            partial(runs.telemetry.rows, run_id, "chunk", after=after, limit=500)
        )
        for row in rows:
            after = row["seq"]
            yield ServerSentEventMessage(
                event="chunk",
                id=str(after),
                data=msgspec.json.encode(_chunk(run_id, row)).decode(),
            )
        if rows:
            continue
        if run is None or run["status"] in TERMINAL:
            return
        await asyncio.sleep(CHUNK_POLL_SECONDS)


def run_runtime_router() -> Router:
    """The runtime and the telemetry reads at `/v1`, errors in the seed's body."""
    return Router(
        path="/v1",
        route_handlers=[RuntimeController, RunTelemetryController],
        exception_handlers=exception_handlers(_queue_error),
        opt={"error_shape": RunQueueError},
    )

"""`sailplane.runtime` against a server that restarts or is briefly unreachable.

A real HTTP server on a local port, in a thread, answers each request as its script says:
drop the connection without an answer, 503 (with `Retry-After: 0`), a refusal, or the
answer. The work's call is made again until it is answered, with the same body (the ids
that make the server store a write once), and gives up once its budget is spent; a refusal
raises at once.
"""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sailplane import runtime


@dataclass
class Server:
    url: str
    script: list[str] = field(default_factory=list)  # what the next requests get; then "ok"
    seen: list[tuple[str, Any]] = field(default_factory=list)  # (path, body) of each request


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    served = Server(url=f"http://127.0.0.1:{httpd.server_address[1]}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(size) or b"null")
            served.seen.append((self.path, body))
            step = served.script.pop(0) if served.script else "ok"
            if step == "drop":  # the server went away before answering
                self.close_connection = True
                return
            if step == "ok":
                self.answer(200, {"run_id": "child", "count": 1, "sequence": 1, "stop": False})
            else:
                self.answer(int(step), {"error": f"status {step}"}, {"Retry-After": "0"})

        do_GET = do_POST

        def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            encoded = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**(headers or {}), "Content-Length": str(len(encoded))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, *args: Any) -> None:
            pass

    httpd.RequestHandlerClass = Handler
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield served
    httpd.shutdown()
    httpd.server_close()


def work(monkeypatch: pytest.MonkeyPatch, url: str, budget: float = 10) -> runtime._Runtime:
    """The runtime of a work whose server is `url`, with a small backoff and `budget`."""
    monkeypatch.setenv("SAILPLANE_API_URL", url)
    monkeypatch.setenv("SAILPLANE_RUN_TOKEN", "spr_test")
    monkeypatch.setenv("SAILPLANE_RUNTIME_RETRY_SECONDS", str(budget))
    monkeypatch.setattr(runtime, "RETRY_FIRST_SECONDS", 0.01, raising=False)
    made = runtime._Runtime()
    monkeypatch.setattr(made, "start", lambda: None)  # no daemon thread in these tests
    return made


def test_a_call_is_made_again_with_the_same_body_until_the_server_answers(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = work(monkeypatch, server.url)
    server.script = ["drop", "503", "502", "drop", "504"]
    body = {"job_id": "j", "request_id": "abc"}
    assert rt.call("POST", "spawn", body) == {
        "run_id": "child",
        "count": 1,
        "sequence": 1,
        "stop": False,
    }
    assert server.seen == [("/v1/runtime/spawn", body)] * 6


def test_a_refusal_raises_at_once(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = work(monkeypatch, server.url)
    for status in ("400", "404", "409", "413", "422", "500"):
        server.script, server.seen = [status], []
        with pytest.raises(runtime.RuntimeRefused) as refused:
            rt.call("POST", "result", {"value": 1})
        assert refused.value.status == int(status)
        assert len(server.seen) == 1


def test_once_the_budget_is_spent_the_call_raises(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = work(monkeypatch, server.url, budget=1)
    server.script = ["503"] * 100_000
    with pytest.raises(runtime.RuntimeRefused) as refused:
        rt.call("POST", "result", {"value": 1})
    assert refused.value.status == 503
    assert 1 < len(server.seen) < 100_000
    # A budget of 0 (and a heartbeat, always) makes one try.
    for once, retry in ((work(monkeypatch, server.url, budget=0), True), (rt, False)):
        server.seen = []
        with pytest.raises(runtime.RuntimeRefused):
            once.call("POST", "heartbeat", retry=retry)
        assert len(server.seen) == 1


def test_a_server_that_does_not_listen_is_tried_until_the_budget_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    rt = work(monkeypatch, f"http://127.0.0.1:{port}", budget=1)
    tries: list[str] = []
    send = rt.send
    monkeypatch.setattr(rt, "send", lambda request: tries.append(request.full_url) or send(request))
    with pytest.raises(urllib.error.URLError):
        rt.call("GET", "context")
    assert len(tries) > 1 and set(tries) == {f"http://127.0.0.1:{port}/v1/runtime/context"}


def test_a_flush_without_an_answer_is_sent_again_under_its_id_before_newer_writes(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = work(monkeypatch, server.url)
    rt.buffer({"kind": "chunk", "text": "a"}, state={"k": 1})
    server.script = ["drop"]
    with pytest.raises(OSError):
        rt.flush(retry=False)  # the daemon's round: one try
    rt.buffer({"kind": "chunk", "text": "b"})
    server.script = ["drop", "503"]
    rt.flush()
    batches = [body for path, body in server.seen if path == "/v1/runtime/batch"]
    first, second = batches[0], batches[-1]
    assert first == {
        "batch_id": first["batch_id"],
        "items": [{"kind": "chunk", "text": "a"}],
        "state": {"k": 1},
    }
    assert batches[:-1] == [first] * 4  # the first try, the drop, the 503, the answer
    assert second["items"] == [{"kind": "chunk", "text": "b"}]
    assert second["batch_id"] != first["batch_id"]
    assert (rt.unsent, rt.items, rt.state) == (None, [], {})


def test_a_refused_batch_is_not_sent_again(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = work(monkeypatch, server.url)
    rt.buffer({"kind": "chunk", "text": "a"})
    server.script = ["422"]
    with pytest.raises(runtime.RuntimeRefused):
        rt.flush()
    rt.flush()
    assert len(server.seen) == 1


def test_the_writes_carry_ids_kept_across_their_tries(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = work(monkeypatch, server.url)
    monkeypatch.setattr(runtime, "_runtime", rt)
    rt.context = {"last_checkpoint": None}
    server.script = ["drop"]
    assert runtime.spawn("job", {"n": 1}, priority=2) == "child"
    server.script = ["503"]
    assert runtime.checkpoint({"step": 1}) == 1
    server.script = ["drop"]
    runtime.output("summary", {"n": 1})
    (spawn, spawn_again), (checkpoint, checkpoint_again), (output, output_again) = (
        server.seen[i : i + 2] for i in (0, 2, 4)
    )
    assert spawn == spawn_again and len(spawn[1]["request_id"]) == 32
    assert spawn[1]["priority"] == 2
    assert checkpoint == checkpoint_again and len(checkpoint[1]["checkpoint_id"]) == 32
    assert output == output_again and len(output[1]["batch_id"]) == 32
    server.seen = []
    runtime.spawn("job")
    assert server.seen[0][1]["request_id"] != spawn[1]["request_id"]


def test_retry_after_is_read_in_seconds_or_as_an_http_date() -> None:
    ahead = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert runtime._retry_after("3") == 3.0
    assert 60 < (runtime._retry_after(ahead) or 0) <= 120
    assert runtime._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past: at once
    for unusable in (None, "", "-1", "soon"):
        assert runtime._retry_after(unusable) is None

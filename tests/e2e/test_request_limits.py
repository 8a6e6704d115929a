"""Bodies are never read before authentication and the size cap: a real `sailplane serve`
keeps its memory flat under four concurrent 200 MB uploads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from sailplane.storage import Database
from tests.services import free_port, wait_for_port

TOKEN = "sp_request-limits-bootstrap-token"
UPLOAD_BYTES = 200_000_000
CHUNK = b"x" * 65536
RSS_LIMIT = 300_000_000


@contextmanager
def serving(database: Database, data_dir: Path) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env |= {"DATABASE_URL": database.conninfo, "SAILPLANE_BOOTSTRAP_TOKEN": TOKEN}
    command = [sys.executable, "-m", "sailplane.cli", "--log-level", "WARNING", "serve"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=120, process=process)
        yield f"http://127.0.0.1:{port}/api/v1", psutil.Process(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _upload(url: str, headers: dict[str, str], statuses: list[int]) -> None:
    """POST a 200 MB body produced chunk by chunk (this process never holds it)."""

    def body() -> Iterator[bytes]:
        for _ in range(UPLOAD_BYTES // len(CHUNK)):
            yield CHUNK

    response = httpx.post(
        url, content=body(), headers={"Content-Type": "application/json", **headers}, timeout=120
    )
    statuses.append(response.status_code)


def test_unauthenticated_uploads_are_refused_without_being_read(
    fresh_db: Database, tmp_path: Path
) -> None:
    with serving(fresh_db, tmp_path / "data") as (api, server):
        url = f"{api}/org/teams"
        assert httpx.get(url).status_code == 401
        peak = server.memory_info().rss
        statuses: list[int] = []
        length = {"Content-Length": str(UPLOAD_BYTES // len(CHUNK) * len(CHUNK))}
        uploads = [threading.Thread(target=_upload, args=(url, length, statuses)) for _ in range(4)]
        for upload in uploads:
            upload.start()
        while any(upload.is_alive() for upload in uploads):
            peak = max(peak, server.memory_info().rss)
            uploads[0].join(timeout=0.05)
        for upload in uploads:
            upload.join()
        assert statuses == [401] * 4
        assert peak < RSS_LIMIT, f"the server grew to {peak / 1e6:.0f} MB"

        # Authenticated bodies over the cap are 413: from their Content-Length, unread, or
        # (sent without one) as soon as they pass the cap.
        statuses.clear()
        owner = {"Authorization": f"Bearer {TOKEN}"}
        _upload(url, {**owner, **length}, statuses)
        _upload(url, owner, statuses)
        assert statuses == [413, 413]
        assert server.memory_info().rss < RSS_LIMIT
        # The server still answers.
        listed = httpx.get(url, headers=owner)
        assert listed.status_code == 200

"""A dispatcher in its own process, fed by Kafka, for tests that kill it with SIGKILL.

    python -m tests.dispatcher_process DATABASE_CONNINFO KAFKA_SERVERS SAIL_URL [--twice]

Every cluster runs on the given Sail server; `--twice` delivers every message twice.
"""

from __future__ import annotations

import signal
import sys
import threading

from sailplane.infra_adapters.executors import FixedTarget
from sailplane.infra_adapters.kafka import KafkaSettings
from sailplane.storage import Database
from sailplane.system import System
from tests.integration.test_consumers import TwiceSource


def main(conninfo: str, servers: str, sail: str, twice: bool) -> int:
    kafka = KafkaSettings(servers, partitions=1, session_timeout_ms=2000, heartbeat_interval_ms=500)
    system = System(
        Database(conninfo=conninfo),
        kafka=kafka,
        run_targets=FixedTarget(sail),
        executor_options={"grace_seconds": 1.0, "lease_seconds": 2.0, "heartbeat_seconds": 0.2},
    )
    system.prepare()
    worker = system.worker("dispatcher")
    if twice:
        worker.consumer.source = TwiceSource(worker.consumer.source)  # type: ignore[attr-defined]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("dispatcher ready", flush=True)
    try:
        worker.run(stop)
    finally:
        system.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], "--twice" in sys.argv[4:]))

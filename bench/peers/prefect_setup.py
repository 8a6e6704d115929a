"""Run with Prefect's own interpreter (bench/peers/.venv): two process work pools and a
deployment of the trivial flow on each; prints their ids as JSON.

`peers-run` has a worker (it polls every second); `peers-idle` has none, so flow runs
created on it stay scheduled, as Sailplane's held runs stay pending: creating them
measures the API, not the execution.
"""

import asyncio
import json
import sys
from pathlib import Path

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate


async def pools() -> None:
    async with get_client() as client:
        for name in ("peers-run", "peers-idle"):
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"), overwrite=True)


def main() -> None:
    asyncio.run(pools())
    here = Path(__file__).resolve().parent
    ids = {}
    for pool in ("peers-run", "peers-idle"):
        source = flow.from_source(source=str(here), entrypoint="flows.py:trivial")
        ids[pool] = str(source.deploy(name=pool, work_pool_name=pool, print_next_steps=False))
    json.dump(ids, sys.stdout)


if __name__ == "__main__":
    main()

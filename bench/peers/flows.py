"""The trivial flow Prefect runs in `bench/peers/run.py` (Prefect's side of a `SELECT 1` run)."""

from prefect import flow


@flow
def trivial() -> int:
    return 1

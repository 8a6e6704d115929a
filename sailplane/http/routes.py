"""Route decorators: Litestar's, with `sync_to_thread=True` said once for every sync handler.

Sailplane's handlers are plain functions that block on PostgreSQL, so they run in a
worker thread. Litestar 2 takes `sync_to_thread` only per handler (a Controller, Router or
the app has no default for it) and warns about a sync handler that does not say it; these
decorators say it for every sync handler. An `async def` handler (a stream, a probe) runs
on the event loop as before. A handler may still pass `sync_to_thread` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import litestar
from litestar.handlers import HTTPRouteHandler
from litestar.utils import is_async_callable

Route = Callable[[Callable[..., Any]], HTTPRouteHandler]


def _threaded(route: type[HTTPRouteHandler]) -> Callable[..., Route]:
    def decorator(*args: Any, **kwargs: Any) -> Route:
        def apply(fn: Callable[..., Any]) -> HTTPRouteHandler:
            if not is_async_callable(fn):
                kwargs.setdefault("sync_to_thread", True)
            return route(*args, **kwargs)(fn)

        return apply

    decorator.__name__ = route.__name__
    decorator.__doc__ = route.__doc__
    return decorator


get = _threaded(litestar.get)
post = _threaded(litestar.post)
put = _threaded(litestar.put)
patch = _threaded(litestar.patch)
delete = _threaded(litestar.delete)

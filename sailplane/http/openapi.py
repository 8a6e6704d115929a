"""The OpenAPI document: its version, the errors every operation declares, and its pages.

Every operation declares the error statuses it can answer, all with the one `Error` body
the error table sends (`sailplane/http/errors.py`). They are derived here from what each
route is (its method, path parameters, body, whether it needs a caller), so no handler
lists them: a 404 for an operation with a path parameter, 409 for one that writes, and so
on (`error_statuses`). An operation that documents its own response for a status keeps it.

`/schema/redoc` (also `/schema`) and `/schema/swagger` load Redoc and Swagger UI from
`/schema/assets/`, files that the `drf-spectacular-sidecar` package ships (the one package
on PyPI with both bundles; Sailplane only reads its files), so the pages work without
internet. The JSON and YAML documents are `/schema/openapi.json` and `/schema/openapi.yaml`.
"""

from __future__ import annotations

import importlib.util
import logging
from importlib.metadata import version
from pathlib import Path

import msgspec
from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router
from msgspec import UNSET, UnsetType

log = logging.getLogger(__name__)

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"


class Error(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error response: a human message and a stable machine code."""

    message: str
    code: str
    field: str | UnsetType = UNSET  # the request field an invalid value (422) was found in


# What each error status means, as every operation that can answer it says.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed (JSON, a parameter) or breaks a rule of the operation.",
    401: "No valid credentials: a bearer token (an API key or a session) is missing or refused.",
    403: "The caller's roles do not allow this operation on this resource.",
    404: "A resource the path names does not exist, or the caller may not know that it does.",
    409: "The resource's state does not allow this, or another request changed it meanwhile.",
    413: "The request body is larger than the server accepts.",
    415: "The request body is not JSON.",
    422: "A value is not valid; `field` names it when there is one.",
    429: "Too many attempts; retry after the `Retry-After` seconds.",
    503: "A service Sailplane depends on is unavailable, or its views are behind; retry later.",
}

_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


# Statuses only some operations answer, by operation id: sign-in refuses a burst of
# failed attempts (`TooManyRequestsError`).
ALSO_ANSWERS: dict[str, set[int]] = {"Login": {429}}

# Handler arguments that are not request parameters (besides the handler's dependencies).
_NOT_PARAMETERS = {"data", "request", "state", "scope", "headers", "cookies", "query", "body"}


def error_statuses(
    methods: set[str], *, path_parameters: bool, body: bool, parameters: bool, authenticated: bool
) -> set[int]:
    """The error statuses an operation can answer, from what the operation is."""
    statuses = {400, 401, 503}
    if authenticated:
        statuses.add(403)
    if path_parameters:
        statuses.add(404)
    if methods & _WRITES:
        statuses.add(409)
    if body:
        statuses |= {413, 415}
    if body or parameters or path_parameters:
        statuses.add(422)
    return statuses


def declare_errors(app: Litestar) -> None:
    """Add the error responses to every operation of `app` (before its document is built)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            arguments = set(handler.parsed_fn_signature.parameters)
            injected = set(handler.resolve_dependencies())
            statuses = error_statuses(
                set(handler.http_methods),
                path_parameters=bool(route.path_parameters),
                body="data" in arguments,
                parameters=bool(arguments - injected - _NOT_PARAMETERS),
                authenticated=not handler.opt.get("exclude_from_auth"),
            )
            statuses |= ALSO_ANSWERS.get(str(handler.operation_id), set())
            declared = {
                status: ResponseSpec(
                    # An API dialect with an error body of its own names its shape.
                    data_container=handler.opt.get("error_shape", Error),
                    description=ERROR_DESCRIPTIONS[status],
                    generate_examples=False,
                )
                for status in sorted(statuses)
            }
            handler.responses = {**declared, **(handler.responses or {})}


def package_version() -> str:
    return version("sailplane")


def _asset_directory() -> Path:
    spec = importlib.util.find_spec("drf_spectacular_sidecar")  # found, not imported
    if spec is None or not spec.submodule_search_locations:
        # The API works without its documentation pages' scripts; say what is missing.
        log.warning("drf-spectacular-sidecar is not installed: /schema pages have no scripts")
        return Path(__file__).parent / "missing-documentation-assets"
    return Path(next(iter(spec.submodule_search_locations))) / "static" / "drf_spectacular_sidecar"


def assets_router() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH, directories=[_asset_directory()], include_in_schema=False
    )


def openapi_config() -> OpenAPIConfig:
    swagger = f"{ASSETS_PATH}/swagger-ui-dist"
    favicon = f"<link rel='icon' type='image/png' href='{swagger}/favicon-32x32.png'>"
    return OpenAPIConfig(
        title="Sailplane",
        version=package_version(),
        description="Self-hosted control plane serving the LakeSail platform API.",
        path=SCHEMA_PATH,
        components=Components(
            security_schemes={"BearerAuth": SecurityScheme(type="http", scheme="bearer")},
        ),
        security=[{"BearerAuth": []}],
        use_handler_docstrings=True,
        create_examples=False,
        render_plugins=[
            RedocRenderPlugin(
                path=["/", "/redoc"],
                js_url=f"{ASSETS_PATH}/redoc/bundles/redoc.standalone.js",
                google_fonts=False,
                favicon=favicon,
            ),
            SwaggerRenderPlugin(
                path="/swagger",
                js_url=f"{swagger}/swagger-ui-bundle.js",
                css_url=f"{swagger}/swagger-ui.css",
                standalone_preset_js_url=f"{swagger}/swagger-ui-standalone-preset.js",
                favicon=favicon,
            ),
            JsonRenderPlugin(),
            YamlRenderPlugin(),
        ],
    )

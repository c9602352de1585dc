"""Request decoding and response encoding shared by the route handlers."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web
from multidict import CIMultiDict

from . import errors

CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"
ACCEPTED_REQUEST_TYPES: Final = frozenset(
    {
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.schemaregistry+json",
        "application/json",
        "application/octet-stream",
    }
)
MAX_BODY_KEY: Final = web.AppKey("max_body_bytes", int)
_HEADERS: Final = CIMultiDict({"Content-Type": CONTENT_TYPE})


def json_response(payload: Any, status: int = 200) -> web.Response:
    """Encode ``payload`` as compact JSON with the Schema Registry content type."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return web.Response(body=body, status=status, headers=_HEADERS)


def raw_json_response(body: bytes, status: int = 200) -> web.Response:
    """Send already-encoded JSON (used by the hot lookup path and raw schema text)."""
    return web.Response(body=body, status=status, headers=_HEADERS)


def error_response(error: errors.RegistryError) -> web.Response:
    """Encode a :class:`~.errors.RegistryError` as Confluent's error body."""
    return json_response(error.to_body(), status=error.status)


async def read_json(request: web.Request) -> Any:
    """Read and decode the JSON request body.

    Raises
    ------
    RegistryError
        415 for an unsupported content type, 413 for a body over the limit,
        422 for an empty body and 400 for malformed JSON.
    """
    content_type = request.headers.get("Content-Type")
    if content_type:
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime not in ACCEPTED_REQUEST_TYPES:
            raise errors.RegistryError(415, 415, f"HTTP 415 Unsupported Media Type: {mime}")
    limit = request.app[MAX_BODY_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    if not raw.strip():
        raise errors.unprocessable("Request body must not be empty")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise errors.bad_request(f"Malformed JSON request body: {exc}") from None


def _too_large(limit: int) -> errors.RegistryError:
    return errors.RegistryError(413, 413, f"Request body is larger than the {limit} byte limit")


def query_flag(request: web.Request, *names: str) -> bool:
    """Read a boolean query parameter like JAX-RS does: only ``true`` (any case) is true."""
    for name in names:
        value = request.query.get(name)
        if value is not None:
            return value.strip().lower() == "true"
    return False


def query_int(request: web.Request, name: str, default: int) -> int:
    """Read an integer query parameter, falling back to ``default`` when absent or malformed."""
    value = request.query.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"Query parameter '{name}' must be an integer, not {value!r}") from None


def paginate(items: list[Any], request: web.Request) -> list[Any]:
    """Apply Confluent's ``offset``/``limit`` query parameters (a negative limit means all)."""
    offset = max(query_int(request, "offset", 0), 0)
    limit = query_int(request, "limit", -1)
    items = items[offset:]
    return items if limit < 0 else items[:limit]


def subject_param(request: web.Request) -> str:
    """Return the ``{subject}`` path parameter, rejecting unusable names.

    Raises
    ------
    RegistryError
        42208 for an empty subject or one containing control characters.
    """
    subject = request.match_info["subject"]
    if not subject or any(ord(c) < 0x20 or ord(c) == 0x7F for c in subject):
        raise errors.invalid_subject(subject)
    return subject


def schema_id_param(request: web.Request) -> int:
    """Return the ``{id}`` path parameter as an int.

    Raises
    ------
    RegistryError
        40403 when it is not an integer (no schema can have that id).
    """
    raw = request.match_info["id"]
    try:
        return int(raw)
    except ValueError:
        raise errors.schema_not_found(raw) from None

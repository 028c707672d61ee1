"""Parsing an HTTP API request body as JSON; ``serializers`` validates what it holds."""

from __future__ import annotations

from typing import Any

from realtime.api import errors
from realtime.protocol import frames


def parse_json(body: bytes, content_type: str) -> Any:
    if "json" not in content_type.lower():  # a missing Content-Type is not JSON either (415)
        raise errors.APIError(415, "unsupported_media_type", "Content-Type must be application/json")
    try:
        # frames.loads: strict UTF-8, bounded nesting, no lone surrogates (all would fail later)
        return frames.loads(body or b"null")
    except ValueError as exc:  # includes UnicodeDecodeError
        raise errors.APIError(400, "invalid_json", f"Malformed JSON body: {exc}") from None

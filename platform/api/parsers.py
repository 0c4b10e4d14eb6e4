"""JSON with a size and a nesting limit: refused with 400, never a 500.

Python's json module recurses once per nesting level, so ``[[[[...]]]]`` a few thousand levels
deep raises RecursionError (a 500 on /api/token/ before this parser). The body is read up to
``DATA_UPLOAD_MAX_MEMORY_SIZE`` + 1 bytes (Content-Length alone is not trusted), and its nesting is counted by a linear scan before
json.loads sees it."""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer


def json_depth(text: str) -> int:
    """Deepest nesting of arrays/objects in a JSON text (strings skipped); linear time."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class LimitedJSONParser(BaseParser):
    """Not a JSONParser subclass on purpose: DRF reads ``request.body`` whole for those, and
    Django then answers an oversize body with an HTML 400 instead of this JSON one."""

    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        max_bytes = int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        max_depth = int(settings.API_JSON_MAX_DEPTH)
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read(max_bytes + 1) if stream is not None else b""
        if len(raw) > max_bytes:
            raise ParseError(f"JSON body larger than {max_bytes // 1024} KB")
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError("JSON body is not valid text") from exc
        if json_depth(text) > max_depth:
            raise ParseError(f"JSON nested deeper than {max_depth} levels")
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")

"""Protocol V2 subscription filters: event names, tag predicates (FilterNode) and JMESPath.

Pure logic, no Django: a filter is parsed and compiled once at subscribe time; matching a message
is then a few dictionary lookups (the expression part evaluates a compiled JMESPath program).
Filters apply only to application events (never to ``pusher:``/``sockudo:`` system frames).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_EVENTS = 50
MAX_EVENT_NAME = 200
MAX_NODES = 128
MAX_DEPTH = 16
MAX_KEY = 256
MAX_VALUE = 1024
MAX_VALS = 128
MAX_EXPRESSION = 4096
MAX_AST_NODES = 256
MAX_AST_DEPTH = 32
MAX_PROJECTION = 64 * 1024

_NEEDS_VAL = {"eq", "neq", "sw", "ew", "ct", "gt", "gte", "lt", "lte"}
_NEEDS_VALS = {"in", "nin"}
_NO_VALUE = {"ex", "nex"}


class FilterError(ValueError):
    """An invalid filter (answered with 4000 by the caller)."""


Predicate = Callable[[Mapping[str, str]], bool]


@dataclass(frozen=True, slots=True)
class Message:
    """What filters see of a message (from its V2 envelope)."""

    event: str
    channel: str
    data: Any
    tags: Mapping[str, str]
    headers: Mapping[str, Any]
    message_id: str | None
    stream_id: str | None
    serial: int | None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Filter:
    events: frozenset[str] | None
    tags: Predicate | None
    expression: Any | None  # a compiled JMESPath program

    def matches(self, message: Message) -> bool:
        if self.events is not None and message.event not in self.events:
            return False
        if self.tags is not None and not self.tags(message.tags):
            return False
        if self.expression is not None:
            return _expression_matches(self.expression, message)
        return True


def parse(
    raw_filter: Any, raw_tags_filter: Any, *, tags_enabled: bool, events_enabled: bool = True
) -> Filter | None:
    """The subscription's filter from ``filter`` (compound or a bare FilterNode) or ``tags_filter``.

    With tag filtering switched off, ``tags`` and ``expression`` are validated, then ignored."""
    events_raw = tags_raw = expression_raw = None
    if raw_filter is not None:
        if isinstance(raw_filter, dict) and {"events", "tags", "expression"} & raw_filter.keys():
            events_raw = raw_filter.get("events")
            tags_raw = raw_filter.get("tags")
            expression_raw = raw_filter.get("expression")
        else:
            tags_raw = raw_filter
    elif raw_tags_filter is not None:
        tags_raw = raw_tags_filter
    events = _events(events_raw) if events_raw is not None else None
    tags = compile_tags(tags_raw) if tags_raw is not None else None
    expression = compile_expression(expression_raw) if expression_raw is not None else None
    if not events_enabled:
        events = None
    if not tags_enabled:
        tags = expression = None
    if events is None and tags is None and expression is None:
        return None
    return Filter(events, tags, expression)


def _events(raw: Any) -> frozenset[str] | None:
    if not isinstance(raw, list):
        raise FilterError("events must be an array of event names")
    if len(raw) > MAX_EVENTS:
        raise FilterError(f"events may list at most {MAX_EVENTS} names")
    for name in raw:
        if not isinstance(name, str) or not name or len(name) > MAX_EVENT_NAME:
            raise FilterError("event names must be non-empty strings of at most 200 characters")
    return frozenset(raw) if raw else None


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return value
    raise FilterError("values must be strings, numbers or booleans")


def compile_tags(node: Any) -> Predicate:
    """Compile a FilterNode into a predicate over a tags map; FilterError when invalid."""
    count = [0]

    def build(node: Any, depth: int) -> Predicate:
        count[0] += 1
        if count[0] > MAX_NODES:
            raise FilterError(f"Invalid tags filter: more than {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise FilterError(f"Invalid tags filter: deeper than {MAX_DEPTH}")
        if not isinstance(node, dict):
            raise FilterError("Invalid tags filter: a node must be an object")
        if "op" in node:
            op, nodes = node.get("op"), node.get("nodes")
            if not isinstance(nodes, list) or not nodes:
                raise FilterError("Invalid tags filter: a branch needs nodes")
            children = [build(child, depth + 1) for child in nodes]
            if op == "and":
                return lambda tags: all(child(tags) for child in children)
            if op == "or":
                return lambda tags: any(child(tags) for child in children)
            if op == "not":
                if len(children) != 1:
                    raise FilterError("Invalid tags filter: not takes exactly one node")
                child = children[0]
                return lambda tags: not child(tags)
            raise FilterError(f"Invalid tags filter: unknown op {op!r}")
        return _leaf(node)

    return build(node, 1)


def _leaf(node: dict) -> Predicate:
    key, cmp = node.get("key"), node.get("cmp")
    if not isinstance(key, str) or not key or len(key.encode()) > MAX_KEY:
        raise FilterError("Invalid tags filter: a leaf needs a non-empty key")
    if cmp in _NEEDS_VALS:
        vals = node.get("vals")
        if not isinstance(vals, list) or not vals or len(vals) > MAX_VALS:
            raise FilterError(f"Invalid tags filter: {cmp} needs 1 to {MAX_VALS} vals")
        options = frozenset(_checked(v) for v in vals)
        if cmp == "in":
            return lambda tags: tags.get(key) in options
        return lambda tags: tags.get(key) not in options
    if cmp in _NO_VALUE:
        if cmp == "ex":
            return lambda tags: key in tags
        return lambda tags: key not in tags
    if cmp not in _NEEDS_VAL:
        raise FilterError(f"Invalid tags filter: unknown cmp {cmp!r}")
    if node.get("val") is None or node.get("val") == "":
        raise FilterError(f"Invalid tags filter: {cmp} needs a val")
    val = _checked(node["val"])
    if cmp == "eq":
        return lambda tags: tags.get(key) == val
    if cmp == "neq":
        return lambda tags: tags.get(key) != val
    if cmp == "sw":
        return lambda tags: key in tags and tags[key].startswith(val)
    if cmp == "ew":
        return lambda tags: key in tags and tags[key].endswith(val)
    if cmp == "ct":
        return lambda tags: key in tags and val in tags[key]
    number = _float(val)
    compare = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }[cmp]

    def numeric(tags: Mapping[str, str]) -> bool:
        value = _float(tags.get(key))
        return value is not None and number is not None and compare(value, number)

    return numeric


def _checked(value: Any) -> str:
    text = _scalar(value)
    if len(text.encode()) > MAX_VALUE:
        raise FilterError(f"Invalid tags filter: values are limited to {MAX_VALUE} bytes")
    return text


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def compile_expression(raw: Any) -> Any:
    """A JMESPath program from a string or ``{"language": "jmespath", "source": ...}``."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    source = raw
    if isinstance(raw, dict):
        if raw.get("language", "jmespath") != "jmespath":
            raise FilterError("Only jmespath expressions are supported")
        source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise FilterError("expression must be a non-empty JMESPath string")
    if len(source.encode()) > MAX_EXPRESSION:
        raise FilterError(f"expression is limited to {MAX_EXPRESSION} bytes")
    try:
        program = jmespath.compile(source)
    except JMESPathError as exc:
        raise FilterError(f"Invalid expression: {exc}") from None
    nodes, depth = _ast_size(program.parsed)
    if nodes > MAX_AST_NODES or depth > MAX_AST_DEPTH:
        raise FilterError("expression is too complex")
    return program


def _ast_size(node: Any, depth: int = 1) -> tuple[int, int]:
    if not isinstance(node, dict):
        return 0, depth - 1
    total, deepest = 1, depth
    for child in node.get("children", ()):
        n, d = _ast_size(child, depth + 1)
        total += n
        deepest = max(deepest, d)
    return total, deepest


def projection(message: Message) -> dict[str, Any]:
    """The document an expression sees (camelCase keys; JSON-text data is parsed)."""
    data = message.data
    if isinstance(data, str) and data[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            data = json.loads(data)
    return {
        "event": message.event,
        "channel": message.channel,
        "data": data,
        "name": None,
        "userId": message.user_id,
        "tags": dict(message.tags),
        "headers": {k: v for k, v in message.headers.items() if not k.startswith("sockudo_")},
        "messageId": message.message_id,
        "streamId": message.stream_id,
        "serial": message.serial,
        "action": None,
    }


def _expression_matches(program: Any, message: Message) -> bool:
    document = projection(message)
    if len(json.dumps(document, default=str)) > MAX_PROJECTION:
        return False
    try:
        result = program.search(document)
    except Exception:  # any evaluation error: no match (fail closed)
        return False
    return result not in (None, False, "", [], {})


def message_from_frame(text: str) -> Message | None:
    """The filterable view of an application-event frame (None for system frames)."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    event = frame.get("event")
    if not isinstance(event, str) or event.startswith(("pusher", "sockudo")):
        return None
    extras = frame.get("extras") if isinstance(frame.get("extras"), dict) else {}
    headers = extras.get("headers") if isinstance(extras.get("headers"), dict) else {}
    tags = frame.get("tags") if isinstance(frame.get("tags"), dict) else {}
    return Message(
        event=event,
        channel=frame.get("channel") or "",
        data=frame.get("data"),
        tags=tags,
        headers=headers,
        message_id=frame.get("message_id"),
        stream_id=frame.get("stream_id"),
        serial=frame.get("serial"),
        user_id=frame.get("user_id"),
    )

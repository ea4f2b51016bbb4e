"""JSON from outside (the dialplan's metadata, an AI server's Event) with
bounds on size and nesting, checked without recursion: deep input costs a
ValueError, never a RecursionError in the tick or a message the other side
cannot decode (protobuf parsers stop at 100 levels; a Struct level is two)."""
from __future__ import annotations

import json


def depth(obj, limit: int) -> int:
    """Nesting depth of JSON-like data (a scalar is 0), walked at most to
    limit + 1: deeper data is not looked at further."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        o, d = todo.pop()
        if isinstance(o, (dict, list)):
            deepest = max(deepest, d)
            if d > limit:
                return d
            todo.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def loads_object(text: str | bytes, max_depth: int, max_bytes: int) -> dict:
    """A JSON object at most max_bytes long and max_depth deep; ValueError says why not."""
    if len(text) > max_bytes:
        raise ValueError(f"{len(text)} bytes, over {max_bytes}")
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    # Counted before parsing: deep text never reaches the parser's recursion.
    if _max_brackets(text) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def _max_brackets(text: str) -> int:
    """The deepest run of open [ and { outside strings: the JSON nesting, if it parses."""
    level = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            level += 1
            deepest = max(deepest, level)
        elif ch in "]}":
            level -= 1
    return deepest

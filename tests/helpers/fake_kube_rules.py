"""The rules the fake Kubernetes API server applies to requests: label and field selectors, merge patches and JSON
patches (with ``test``), as the real API server defines them."""

from __future__ import annotations

import copy
import re
from typing import Any

from starlette.responses import JSONResponse

Obj = dict[str, Any]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> JSONResponse:
        return JSONResponse(status(self.code, self.reason, self.message), status_code=self.code)


def status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


_REQUIREMENT = re.compile(r"\s*(!?)\s*([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*")


def parse_selector(text: str | None) -> list[tuple[str, str, set[str]]]:
    """``a=b,c!=d,e in (x,y),f notin (z),g,!h`` as (key, op, values)."""
    if not text:
        return []
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    requirements = []
    for part in parts:
        match = _REQUIREMENT.fullmatch(part)
        if not match:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
        bang, key, eq, value, set_op, values = match.groups()
        if bang:
            requirements.append((key, "!", set()))
        elif eq:
            requirements.append((key, "!=" if eq == "!=" else "=", {value}))
        elif set_op:
            requirements.append((key, set_op, {v.strip() for v in values.split(",") if v.strip()}))
        else:
            requirements.append((key, "exists", set()))
    return requirements


def labels_match(labels: dict[str, str], requirements: list[tuple[str, str, set[str]]]) -> bool:
    for key, op, values in requirements:
        present, value = key in labels, labels.get(key)
        if op == "=" and value not in values:
            return False
        if op == "!=" and value in values:
            return False
        if op == "in" and value not in values:
            return False
        if op == "notin" and present and value in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


def fields_match(obj: Obj, text: str | None) -> bool:
    for part in filter(None, (text or "").split(",")):
        key, _, value = part.partition("=")
        node: Any = obj
        for step in key.lstrip("=").split("."):
            node = node.get(step) if isinstance(node, dict) else None
        if str(node if node is not None else "") != value.lstrip("="):
            return False
    return True


# --- patches ------------------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(doc: Obj, operations: list[Obj]) -> Obj:
    """RFC 6902; a failing ``test`` is a 422 as on the real server."""
    doc = copy.deepcopy(doc)
    for op in operations:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        try:
            for step in parents:
                node = node[int(step)] if isinstance(node, list) else node[step]
            kind = op["op"]
            if kind == "test":
                current = node[int(last)] if isinstance(node, list) else node[last]
                if current != op["value"]:
                    raise ApiError(422, "Invalid", f"the server rejected our request: test failed at {op['path']}")
            elif kind in ("add", "replace"):
                if isinstance(node, list):
                    index = len(node) if last == "-" else int(last)
                    if kind == "add":
                        node.insert(index, op["value"])
                    else:
                        node[index] = op["value"]
                else:
                    if kind == "replace" and last not in node:
                        raise KeyError(last)
                    node[last] = op["value"]
            elif kind == "remove":
                del node[int(last) if isinstance(node, list) else last]
            else:
                raise ApiError(422, "Invalid", f"unsupported patch operation {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, "Invalid", f"the server rejected our request: no path {op['path']}") from None
    return doc

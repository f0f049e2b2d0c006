"""A small JSON Schema checker for structured output: the keywords model vendors accept.

Vendors constrain output to a subset of JSON Schema (types, properties, required,
additionalProperties, items, enum, const, anyOf/oneOf/allOf, local `$ref`s, numeric and length
bounds); that subset is what is checked here. Keywords outside it are ignored, as a validator
ignores annotations. Returns the first problem as a path and a reason, or None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_MAX_DEPTH = 64


def _is(value: Any, name: str) -> bool:
    kinds = _TYPES.get(name)
    if kinds is None:
        return True
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, kinds)


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for key in ref[2:].split("/"):
        node = (
            node.get(key.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        )
    return node if isinstance(node, dict) else {}


def check(value: Any, schema: Mapping[str, Any]) -> str | None:
    """The first way `value` breaks `schema` (e.g. `$.items[2]: expected integer`), or None."""
    return _check(value, schema, schema, "$", 0)


def _check(value: Any, schema: Any, root: Mapping[str, Any], path: str, depth: int) -> str | None:
    if schema is True or not isinstance(schema, Mapping):
        return None if schema is not False else f"{path}: no value is allowed here"
    if depth > _MAX_DEPTH:
        return f"{path}: the schema nests too deep to check"
    if "$ref" in schema:
        problem = _check(value, _resolve(str(schema["$ref"]), root), root, path, depth + 1)
        if problem:
            return problem
    wanted = schema.get("type")
    if wanted is not None:
        names = wanted if isinstance(wanted, list) else [wanted]
        if not any(_is(value, str(n)) for n in names):
            return f"{path}: expected {' or '.join(map(str, names))}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: {value!r} is not one of {schema['enum']!r}"
    if "const" in schema and value != schema["const"]:
        return f"{path}: expected {schema['const']!r}"
    for keyword in ("allOf",):
        for sub in schema.get(keyword) or ():
            problem = _check(value, sub, root, path, depth + 1)
            if problem:
                return problem
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if options:
            problems = [_check(value, sub, root, path, depth + 1) for sub in options]
            if all(problems):
                return f"{path}: matches none of the {keyword} options ({problems[0]})"
    if isinstance(value, dict):
        return _check_object(value, schema, root, path, depth)
    if isinstance(value, list):
        return _check_array(value, schema, root, path, depth)
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{path}: shorter than {schema['minLength']}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{path}: longer than {schema['maxLength']}"
    elif isinstance(value, int | float) and not isinstance(value, bool):
        for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            bound = schema.get(keyword)
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                fails = {
                    "minimum": value < bound,
                    "maximum": value > bound,
                    "exclusiveMinimum": value <= bound,
                    "exclusiveMaximum": value >= bound,
                }[keyword]
                if fails:
                    return f"{path}: {value} breaks {keyword} {bound}"
    return None


def _check_object(
    value: dict[str, Any], schema: Mapping[str, Any], root: Mapping[str, Any], path: str, depth: int
) -> str | None:
    for name in schema.get("required") or ():
        if name not in value:
            return f"{path}: missing required property {name!r}"
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            problem = _check(item, properties[name], root, f"{path}.{name}", depth + 1)
        elif extra is False:
            problem = f"{path}: unexpected property {name!r}"
        else:
            problem = _check(item, extra, root, f"{path}.{name}", depth + 1)
        if problem:
            return problem
    return None


def _check_array(
    value: list[Any], schema: Mapping[str, Any], root: Mapping[str, Any], path: str, depth: int
) -> str | None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        return f"{path}: fewer than {schema['minItems']} items"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"{path}: more than {schema['maxItems']} items"
    items = schema.get("items")
    if items is not None:
        for i, item in enumerate(value):
            problem = _check(item, items, root, f"{path}[{i}]", depth + 1)
            if problem:
                return problem
    return None

"""Request bodies and path values synthesised from an app's OpenAPI schema, for the
route walk of tests/api/test_access.py: the smallest valid body, with the caller's own
company's values (or the other company's) where the walk has them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

Pair = tuple[Any, Any]
"""(value for the caller's own company, value for the other company or None)."""

# Body fields that tie a request to a company: a body carrying the other company's value
# must answer 404 to a client-bound caller.
COMPANY_KEYS = {"client_code", "client_id", "delivery_id", "device_id"}

_serial = itertools.count(1)


def resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


@dataclass
class Synth:
    spec: dict[str, Any]
    values: dict[str, Pair]
    side: int  # 0: own company, 1: other company
    company_bound: bool = False
    guessed_reference: bool = False
    notes: list[str] = field(default_factory=list)

    def value(self, schema: dict[str, Any], name: str | None) -> Any:
        schema = resolve(schema, self.spec)
        if name in self.values and self.values[name][self.side] is not None:
            if name in COMPANY_KEYS:
                self.company_bound = True
            return self.values[name][self.side]
        if name and (name.endswith("_id") or name.endswith("_code")):
            self.guessed_reference = True
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                options = [o for o in schema[key] if resolve(o, self.spec).get("type") != "null"]
                return self.value(options[0], name) if options else None
        if "enum" in schema:
            return schema["enum"][0]
        if "const" in schema:
            return schema["const"]
        if "default" in schema:
            return schema["default"]
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            return self.object(schema)
        if kind == "array":
            return [
                self.value(schema.get("items", {}), None) for _ in range(schema.get("minItems", 0))
            ]
        if kind == "integer":
            return max(int(schema.get("minimum", 1)), int(schema.get("exclusiveMinimum", 0)) + 1)
        if kind == "number":
            return float(schema.get("minimum", 1))
        if kind == "boolean":
            return False
        if kind == "string":
            fmt = schema.get("format")
            if fmt == "date":
                return "2030-01-15"
            if fmt == "date-time":
                return "2030-01-15T10:00:00Z"
            if fmt == "email":
                return "walk@example.com"
            if fmt == "uuid":
                return "4c4c4544-0042-3510-8052-b4c04f4e5331"
            text = f"W{next(_serial)}"
            text = text.ljust(int(schema.get("minLength", 1)), "x")
            return text[: int(schema.get("maxLength", 64))]
        return None

    def object(self, schema: dict[str, Any]) -> dict[str, Any]:
        schema = resolve(schema, self.spec)
        required = set(schema.get("required", []))
        out: dict[str, Any] = {}
        for prop, sub in schema.get("properties", {}).items():
            if prop in required or prop in self.values:
                out[prop] = self.value(sub, prop)
        return out


def from_schema(spec: dict[str, Any], path: str, method: str, name: str) -> Pair:
    """A path parameter no factory knows: an enum's first value, else unknown."""
    operation = spec["paths"].get(path, {}).get(method.lower(), {})
    for param in operation.get("parameters", []):
        if param.get("in") == "path" and param.get("name") == name:
            schema = resolve(param.get("schema", {}), spec)
            if "enum" in schema:
                return schema["enum"][0], None
    return None, None


def json_body_schema(spec: dict[str, Any], path: str, method: str) -> dict[str, Any] | None:
    operation = spec["paths"].get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    schema: dict[str, Any] = content["application/json"].get("schema", {})
    return schema

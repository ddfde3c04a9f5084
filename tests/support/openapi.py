"""CoinGecko's official OpenAPI 3.0 response schemas, turned into JSON Schema for ``jsonschema``.

The fake server and the real client are only as honest as the shapes they are checked against, so
the tests validate against CoinGecko's own published files rather than hand-copied expectations.
OpenAPI 3.0 schemas are *almost* JSON Schema: ``nullable`` has to become a ``"null"`` type and
``$ref``s into ``components`` must resolve; that conversion lives here.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped]

SpecPlan = Literal["demo", "pro"]

SPEC_FILES: dict[SpecPlan, str] = {"demo": "openapi-demo.json", "pro": "openapi-pro.json"}

# Where the specs may live: an explicit override first, then the shared reference copy.
_SPEC_DIRS = [
    os.environ.get("CW_COINGECKO_SPEC_DIR", ""),
    str(Path(__file__).resolve().parents[2] / "docs" / "coingecko"),
]

# OpenAPI-only keywords with no JSON Schema meaning (``example`` would be harmless but noisy).
_DROP = frozenset({"nullable", "example", "xml", "externalDocs", "discriminator", "x-mint"})


def spec_dir() -> Path | None:
    """The first directory holding both spec files, or None (the spec tests then fail, saying why)."""
    for candidate in _SPEC_DIRS:
        if candidate and all((Path(candidate) / f).is_file() for f in SPEC_FILES.values()):
            return Path(candidate)
    return None


@functools.cache
def load_spec(plan: SpecPlan = "demo") -> dict[str, Any]:
    directory = spec_dir()
    if directory is None:
        raise FileNotFoundError(
            f"CoinGecko OpenAPI files not found in any of {[d for d in _SPEC_DIRS if d]}; set CW_COINGECKO_SPEC_DIR"
        )
    data: dict[str, Any] = json.loads((directory / SPEC_FILES[plan]).read_text(encoding="utf-8"))
    return data


def to_json_schema(node: Any, *, strict: bool = False) -> Any:
    """Convert one OpenAPI 3.0 schema node (recursively) to JSON Schema 2020-12.

    ``strict`` closes every object that lists its ``properties`` but says nothing about others,
    so a misspelt key (``usd_24hr_vol``) fails validation instead of slipping through: the spec
    is permissive by omission, the fake must not be.
    """
    if isinstance(node, list):
        return [to_json_schema(item, strict=strict) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "$ref" and isinstance(value, str):
            out[key] = value.replace("#/components/schemas/", "#/$defs/")
        elif key in ("properties", "patternProperties", "$defs"):
            out[key] = {k: to_json_schema(v, strict=strict) for k, v in value.items()}
        elif key == "enum":
            out[key] = list(value)
        else:
            out[key] = to_json_schema(value, strict=strict)
    if node.get("nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif kind is None and "$ref" in out:
            out = {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}], **out}
        if "enum" in out and None not in out["enum"]:
            out["enum"].append(None)
    if strict and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def response_schema(path: str, *, plan: SpecPlan = "demo", status: str = "200", strict: bool = True) -> dict[str, Any]:
    """The JSON Schema of ``GET path``'s response, ``components`` carried along as ``$defs``."""
    spec = load_spec(plan)
    try:
        media = spec["paths"][path]["get"]["responses"][status]["content"]["application/json"]
    except KeyError as exc:
        raise KeyError(f"{plan} spec has no JSON {status} response for GET {path}") from exc
    schema: dict[str, Any] = to_json_schema(copy.deepcopy(media["schema"]), strict=strict)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$defs"] = {
        name: to_json_schema(s, strict=strict) for name, s in spec.get("components", {}).get("schemas", {}).items()
    }
    return schema


def response_example(path: str, *, plan: SpecPlan = "demo", status: str = "200") -> Any:
    """CoinGecko's own example answer, used to prove the converted schema accepts real data."""
    media = load_spec(plan)["paths"][path]["get"]["responses"][status]["content"]
    return media["application/json"].get("example")


def validate_response(instance: Any, path: str, *, plan: SpecPlan = "demo", strict: bool = True) -> None:
    """Raise ``jsonschema.ValidationError`` (with every problem listed) unless ``instance`` fits."""
    schema = response_schema(path, plan=plan, strict=strict)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
        raise jsonschema.ValidationError(
            f"{len(errors)} schema error(s) for GET {path} ({plan}):\n" + "\n".join(lines[:20])
        )

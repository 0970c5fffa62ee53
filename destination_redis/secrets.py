"""Secret values of the config, and their removal from every line the connector emits.

The CDK's `get_secrets` + `filter_secrets` did this before; kept here without the CDK. A secret
is the value of a field marked `airbyte_secret` in spec.json, found by walking the spec and the
config together (nested objects, `oneOf` alternatives, array items). A value can appear in an
emitted JSON line as is, or escaped: a password holding `"`, `\\` or a control character is
written `\\"`, `\\\\`, `\\n` by the JSON encoder, non-ASCII may be `\\uXXXX`, and a message that
quotes JSON text is escaped once more. Every such form is replaced with `****` in each string of
a message before it is encoded (protocol.py), never in the encoded line: a replacement there
could cut an escape sequence in two and break the JSON. Once no string holds a form of the
secret, the encoder cannot write one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

MASK = "****"

_forms: list[str] = []  # every form of every secret, longest first


def secret_values(spec: Mapping[str, Any], config: Any) -> list[str]:
    """The values in `config` of the fields `spec` (a JSON schema) marks `airbyte_secret`."""
    found: list[str] = []
    _walk(spec, config, found)
    return found


def _walk(schema: Any, value: Any, found: list[str]) -> None:
    if not isinstance(schema, Mapping):
        return
    if schema.get("airbyte_secret") is True and _is_value(value):
        found.append(str(value))
    for alternative in schema.get("oneOf", ()) or ():  # the value may be any of them
        _walk(alternative, value, found)
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and isinstance(value, Mapping):
        for name, sub_schema in properties.items():
            if name in value:
                _walk(sub_schema, value[name], found)
    items = schema.get("items")
    if items is not None and isinstance(value, list):
        for item in value:
            _walk(items, item, found)


def _is_value(value: Any) -> bool:
    """Strings and numbers, not empty: what could be printed (as the CDK, which skipped falsy ones)."""
    return isinstance(value, str | int | float) and not isinstance(value, bool) and value != ""


def escaped_forms(secret: str) -> set[str]:
    """The secret as is, and as text that quotes it may hold it: inside a JSON string (orjson,
    or json with \\uXXXX escapes) once or twice, or a Python repr of it or of its UTF-8 bytes."""
    forms = {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]}
    for _ in range(2):
        forms |= {_orjson_inner(f) for f in forms} | {_ascii_inner(f) for f in forms}
    return {form for form in forms if form}


def _orjson_inner(text: str) -> str:
    return orjson.dumps(text).decode()[1:-1]


def _ascii_inner(text: str) -> str:
    return json.dumps(text)[1:-1]


def register(secrets: Iterable[str]) -> None:
    """Redact these from now on (replacing what was registered before, as update_secrets did)."""
    forms: set[str] = set()
    for secret in secrets:
        forms |= escaped_forms(secret)
    # Longest first: of "ab" and "abc", "abc" must not become "****c".
    _forms[:] = sorted(forms, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every form of every registered secret replaced by ****."""
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    return text

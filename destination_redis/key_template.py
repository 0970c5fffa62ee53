"""A stream's `key_template`: the Redis key each record is written to, named from its properties.

The language: literal text with `{path}` placeholders.
- `{id}` is the record's top-level property `id`; `{address.city}` follows a dotted path into nested
  objects. A path's segments are separated by single dots and are never empty; a segment is any
  text without `.`, `{` or `}` (spaces are kept as they are).
- `{{` is a literal `{` and `}}` a literal `}`, so `t:{{{tenant}}}:u:{id}` gives `t:{acme}:u:5`
  (a Redis Cluster hash tag). Any other brace outside a placeholder, or a `{` inside one, is an
  unbalanced brace.
- A template needs at least one placeholder: without one every record would get the same key.
The rendered key is the config's key_prefix, then the literal text (UTF-8) and each placeholder's
value (bytes, inserted as is: no escaping). Error positions are 0-based character indexes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

_EXAMPLE = "e.g. 'user:{id}' or 'user:{address.city}'"


class TemplateError(ValueError):
    """A key_template the user must fix; the message quotes it and says what is wrong and where."""


@dataclass(frozen=True)
class Placeholder:
    """`{a.b}`: the value at path ("a", "b") of the record."""

    path: tuple[str, ...]


# The collision check's alphabet: a literal character, or _STAR for one or more placeholders.
_STAR = None
_Token: TypeAlias = str | None


@dataclass(frozen=True)
class KeyTemplate:
    """A parsed key_template; build it with `parse`, which refuses what `render` could not honour."""

    text: str
    parts: tuple[str | Placeholder, ...]
    # Precomputed once so that `render`, called per record, is a single %-format.
    _format: bytes = field(init=False, repr=False, compare=False)
    _arity: int = field(init=False, repr=False, compare=False)
    _tokens: tuple[_Token, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fmt = [b"%b"]  # the prefix
        tokens: list[_Token] = []
        arity = 0
        for part in self.parts:
            if isinstance(part, Placeholder):
                fmt.append(b"%b")
                arity += 1
                if not tokens or tokens[-1] is not _STAR:  # `{a}{b}` matches what `{a}` matches
                    tokens.append(_STAR)
            else:
                fmt.append(part.encode().replace(b"%", b"%%"))
                tokens.extend(part)
        object.__setattr__(self, "_format", b"".join(fmt))
        object.__setattr__(self, "_arity", arity)
        object.__setattr__(self, "_tokens", tuple(tokens))

    @classmethod
    def parse(cls, text: str) -> KeyTemplate:
        """Parse and validate `text`; raises TemplateError naming the first problem and its position."""
        if text == "":
            raise TemplateError(f"key_template '' is empty: it must name each record's key, {_EXAMPLE}")
        parts: list[str | Placeholder] = []
        literal: list[str] = []
        i, n = 0, len(text)
        while i < n:
            char = text[i]
            if char == "{" and text.startswith("{{", i):
                literal.append("{")
                i += 2
            elif char == "}" and text.startswith("}}", i):
                literal.append("}")
                i += 2
            elif char == "}":
                raise _unbalanced(
                    text, f"'}}' at position {i} has no opening '{{' (write '}}}}' for a literal brace)"
                )
            elif char == "{":
                end = _placeholder_end(text, i)
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(Placeholder(_path(text, i, end)))
                i = end + 1
            else:
                literal.append(char)
                i += 1
        if literal:
            parts.append("".join(literal))
        if not any(isinstance(part, Placeholder) for part in parts):
            hint = " ('{{' and '}}' are literal braces)" if "{{" in text or "}}" in text else ""
            raise TemplateError(
                f"key_template {text!r} has no placeholder{hint}: every record would get the same key; "
                f"name a property in braces, {_EXAMPLE}"
            )
        return cls(text=text, parts=tuple(parts))

    @property
    def paths(self) -> tuple[tuple[str, ...], ...]:
        """Each placeholder's path, in order, duplicates kept (one value per placeholder to render)."""
        return tuple(part.path for part in self.parts if isinstance(part, Placeholder))

    @property
    def top_level(self) -> tuple[str, ...]:
        """The distinct top-level properties the template reads, in first-seen order."""
        return tuple(dict.fromkeys(path[0] for path in self.paths))

    def render(self, prefix: bytes, values: Sequence[bytes]) -> bytes:
        """`prefix` + the template with `values` (one per placeholder, in order) inserted as they are."""
        if len(values) != self._arity:
            raise ValueError(f"key_template {self.text!r} takes {self._arity} values, got {len(values)}")
        return self._format % (prefix, *values)

    def shape(self, prefix: str = "") -> str:
        """For messages: `prefix` + the template with literal braces shown plain and placeholders as
        `<path>`, e.g. `app:user:<id>`; unambiguous to a reader where the `{{ }}` escapes are not."""
        return prefix + "".join(
            f"<{'.'.join(part.path)}>" if isinstance(part, Placeholder) else part for part in self.parts
        )


def _unbalanced(text: str, detail: str) -> TemplateError:
    return TemplateError(f"key_template {text!r} has an unbalanced brace: {detail}")


def _placeholder_end(text: str, start: int) -> int:
    """The position of the `}` closing the placeholder opened at `start`."""
    for j in range(start + 1, len(text)):
        if text[j] == "}":
            return j
        if text[j] == "{":
            raise _unbalanced(
                text,
                f"'{{' at position {j} is inside the placeholder opened at position {start} "
                "(placeholders do not nest; write '{{' outside a placeholder for a literal brace)",
            )
    raise _unbalanced(text, f"'{{' at position {start} is never closed (write '{{{{' for a literal brace)")


def _path(text: str, start: int, end: int) -> tuple[str, ...]:
    """The path of the placeholder `text[start:end + 1]`, its segments checked non-empty."""
    inner = text[start + 1 : end]
    where = f"key_template {text!r} has"
    if inner == "":
        raise TemplateError(
            f"{where} an empty placeholder '{{}}' at position {start}: name a property, {_EXAMPLE}"
        )
    segments = tuple(inner.split("."))
    if "" in segments:
        if inner.startswith("."):
            problem = f"starts with '.' (position {start + 1})"
        elif inner.endswith("."):
            problem = f"ends with '.' (position {end - 1})"
        else:
            problem = f"has '..' at position {start + 1 + inner.index('..')}"
        raise TemplateError(
            f"{where} an empty path segment: the placeholder '{{{inner}}}' at position {start} {problem}; "
            "a path is property names separated by single dots, e.g. '{address.city}'"
        )
    return segments


def could_collide(a: KeyTemplate, b: KeyTemplate) -> bool:
    """True when some placeholder values make `a` and `b` render the same key.

    Each placeholder is taken as "any string" independently (even two of the same path), so this may
    say True where equal paths would in fact keep keys apart: the safe direction for refusing two
    streams that could overwrite each other's keys. It is the emptiness test of the intersection of
    two glob patterns whose only wildcard is `*`, by dynamic programming over (position in a,
    position in b). Characters, not bytes, are compared: literals are whole UTF-8 characters, so
    the answer is the same for keys compared byte for byte.
    """
    ta, tb = a._tokens, b._tokens
    n, m = len(ta), len(tb)
    # ok[i][j]: some string is matched both by ta[i:] and by tb[j:].
    ok = [[False] * (m + 1) for _ in range(n + 1)]
    ok[n][m] = True
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            if i == n and j == m:
                continue
            if i < n and ta[i] is _STAR:
                # The star matches nothing more, or absorbs b's next token (a character or b's star).
                ok[i][j] = ok[i + 1][j] or (j < m and ok[i][j + 1])
            elif j < m and tb[j] is _STAR:
                ok[i][j] = ok[i][j + 1] or (i < n and ok[i + 1][j])
            else:
                ok[i][j] = i < n and j < m and ta[i] == tb[j] and ok[i + 1][j + 1]
    return ok[0][0]


def could_render(template: KeyTemplate, key: str) -> bool:
    """True when some placeholder values make `template` render exactly `key` (another stream's
    id counter, say). Each placeholder is "any string", as in `could_collide`."""
    pattern = "".join(".*" if token is _STAR else re.escape(token) for token in template._tokens)
    return re.fullmatch(pattern, key, re.DOTALL) is not None

"""When a record's key expires: from the record's own data, else the stream's ttl_seconds.

Two optional top-level properties of a record say it:

- `expire_at_field`: WHEN the key expires. A JSON number is epoch seconds, or epoch milliseconds
  when it is above 10**11 (10**11 s is the year 5138, 10**11 ms is 1973); a fraction is allowed.
  A JSON string is either RFC 3339 text with a UTC offset (`2026-12-07T10:00:00Z`,
  `2026-12-07 10:00:00.123+02:00`, lower-case `t` / `z` too), or a plain decimal number
  (`"1700000000"`, `"-1.5"`; no exponent), read as the number it holds: CSV-like sources send
  numbers as strings. A date or time without an offset is refused: its instant is ambiguous.
  The key gets `PEXPIREAT key <epoch ms>` (rounded down to the millisecond); a time already past
  deletes the key at once.
- `ttl_field`: seconds to live, a JSON number or a decimal string as above. Whole seconds:
  `EXPIRE key n`; a fraction: `PEXPIRE key <ms>` (to the nearest millisecond, at least 1 for a
  positive ttl). Zero or negative: `PEXPIRE key 0`, which deletes the key (every Redis since 2.6
  deletes a key given a non-positive TTL).

`expire_at_field` wins where its value is present and not null, else `ttl_field`, else the
stream's `ttl_seconds` (`EXPIRE key ttl_seconds`), else `PERSIST key` (a no-op on a key just
written, but it keeps one command, so one reply, per record).

This runs once per record: integers are decoded from the raw JSON with int() alone; the slower
exact decimal arithmetic is for fractions and exponents, and a regular expression only for text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

import msgspec

from destination_redis.writers.base import RecordError

# An epoch number above this is milliseconds, at or below it seconds.
MS_THRESHOLD = 10**11
# PEXPIREAT's argument is a signed 64-bit count of milliseconds.
MIN_MS = -(2**63)
MAX_MS = 2**63 - 1
# EXPIRE / PEXPIRE add the server's clock to the ttl (Redis before 7.0 without an overflow
# check, so an overflow there deleted the key): a ttl leaves room for any clock up to the year 2286.
MAX_TTL_MS = MAX_MS - 10**13

# No time or ttl is written with more characters; longer text is refused before any arithmetic.
_MAX_TEXT = 400
# An exponent beyond this is clamped: the value is then far out of range, or far below 1 ms.
_MAX_EXPONENT = 1000
# The shown value in an error message is cut to this many characters.
_SHOWN = 60

# Each takes (len(value), value) and gives a template that takes (len(key), key).
_PEXPIREAT = b"*3\r\n$9\r\nPEXPIREAT\r\n$%%d\r\n%%s\r\n$%d\r\n%s\r\n"
_EXPIRE = b"*3\r\n$6\r\nEXPIRE\r\n$%%d\r\n%%s\r\n$%d\r\n%s\r\n"
_PEXPIRE = b"*3\r\n$7\r\nPEXPIRE\r\n$%%d\r\n%%s\r\n$%d\r\n%s\r\n"
_PERSIST = b"*2\r\n$7\r\nPERSIST\r\n$%d\r\n%s\r\n"  # takes (len(key), key)

# RFC 3339's date-time (section 5.6), with a space for the `T` as its note allows.
_RFC3339 = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:[Zz]|([+-])(\d\d):(\d\d))"
)
# A date, or a date and time, without an offset: only to say why such text is refused.
_LOCAL = re.compile(rb"\d{4}-\d\d-\d\d(?:[Tt ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?")
_EPOCH_DAY = date(1970, 1, 1).toordinal()

_TIME_FORMS = "epoch seconds or milliseconds, or RFC 3339 text with a UTC offset"
_TTL_FORMS = "a number of seconds, as a JSON number or a decimal string"


class Expiry:
    """How a stream's record keys expire: from the data, else the stream's ttl_seconds."""

    __slots__ = ("_fallback", "_fields", "expire_at_field", "ttl_field", "ttl_seconds")

    def __init__(self, expire_at_field: str | None, ttl_field: str | None, ttl_seconds: int | None) -> None:
        self.expire_at_field = expire_at_field or None
        self.ttl_field = ttl_field or None
        self.ttl_seconds = ttl_seconds
        self._fields = tuple(name for name in (self.expire_at_field, self.ttl_field) if name is not None)
        if ttl_seconds:
            seconds = b"%d" % ttl_seconds
            self._fallback = _EXPIRE % (len(seconds), seconds)  # takes (len(key), key), as _PERSIST
        else:
            self._fallback = _PERSIST

    @property
    def fields(self) -> tuple[str, ...]:
        """The top-level properties to decode from each record: expire_at_field first."""
        return self._fields

    @property
    def from_data(self) -> bool:
        """Whether any record property says when its key expires."""
        return bool(self._fields)

    @property
    def active(self) -> bool:
        """Whether keys expire at all (from the data or the stream's ttl_seconds): when not, `pack`
        only ever gives a PERSIST, which a writer may leave out (then no reply to count)."""
        return bool(self._fields) or bool(self.ttl_seconds)

    def pack(self, key: bytes, values: Sequence[bytes | None]) -> bytes:
        """RESP of the one command that sets `key`'s expiry (one reply): PEXPIREAT, EXPIRE,
        PEXPIRE or PERSIST. `values`: the raw JSON of each property of `fields`, in that order
        (None when absent). Raises RecordError when a present value is not a time / a ttl."""
        return self.resolve(values) % (len(key), key)

    def resolve(self, values: Sequence[bytes | None]) -> bytes:
        """`pack` with the key left open: the RESP template that `% (len(key), key)` completes.
        For a writer that reads (and checks) a record's values before its key is known (`K:<id>`
        gets its id when the batch is written)."""
        at = 0
        if self.expire_at_field is not None:
            raw = values[0]
            if raw is not None:
                raw = bytes(raw)  # a msgspec.Raw is not bytes at run time
                if raw != b"null":
                    ms = b"%d" % expire_at_ms(raw, self.expire_at_field)
                    return _PEXPIREAT % (len(ms), ms)
            at = 1
        if self.ttl_field is not None:
            raw = values[at]
            if raw is not None:
                raw = bytes(raw)
                if raw != b"null":
                    ttl = ttl_ms(raw, self.ttl_field)
                    if ttl and not ttl % 1000:
                        seconds = b"%d" % (ttl // 1000)
                        return _EXPIRE % (len(seconds), seconds)
                    text = b"%d" % ttl
                    return _PEXPIRE % (len(text), text)
        return self._fallback

    def describe(self) -> str:
        """E.g. "expire_at_field 'expires_at', else ttl_seconds 3600", for log and check messages."""
        parts = []
        if self.expire_at_field is not None:
            parts.append(f"expire_at_field '{self.expire_at_field}'")
        if self.ttl_field is not None:
            parts.append(f"ttl_field '{self.ttl_field}'")
        parts.append(f"ttl_seconds {self.ttl_seconds}" if self.ttl_seconds else "no expiry")
        return ", else ".join(parts)


def expire_at_ms(raw: bytes, field: str) -> int:
    """The epoch milliseconds (rounded down) that `raw`, the JSON of the expire_at_field `field`,
    names; RecordError when it is not a time."""
    return _expire_at_ms(bytes(raw), field)  # a msgspec.Raw is not bytes at run time


def _expire_at_ms(raw: bytes, field: str) -> int:
    if raw.isdigit() and len(raw) < 19:  # an integer: the common case
        n = int(raw)
        return n if n > MS_THRESHOLD else n * 1000
    text = _string(raw)
    number = _decimal(raw, True) if text is None else _decimal(text, False)
    if number is None:
        if text is not None and (ms := _rfc3339_ms(text)) is not None:
            return ms
        if text is not None and _LOCAL.fullmatch(text):
            raise RecordError(
                f"the expire_at_field '{field}' holds {_shown(raw)}, a time without a UTC offset, "
                f"whose instant is ambiguous (add Z or an offset such as +02:00)"
            )
        raise RecordError(
            f"the expire_at_field '{field}' holds {_shown(raw)}, which is not a time ({_TIME_FORMS})"
        )
    m, p = number
    above = m > MS_THRESHOLD * 10**p if p >= 0 else m * 10**-p > MS_THRESHOLD
    ms = _floor_shift(m, (0 if above else 3) - p)
    if not MIN_MS <= ms <= MAX_MS:
        raise RecordError(
            f"the expire_at_field '{field}' holds {_shown(raw)}, which is out of range for a time "
            f"(a 64-bit count of milliseconds since 1970)"
        )
    return ms


def ttl_ms(raw: bytes, field: str) -> int:
    """The milliseconds to live that `raw`, the JSON of the ttl_field `field`, says: to the nearest
    millisecond, at least 1 for a positive ttl, 0 for zero or a negative ttl (the key is to be
    deleted); RecordError when it is not a number of seconds."""
    return _ttl_ms(bytes(raw), field)


def _ttl_ms(raw: bytes, field: str) -> int:
    if raw.isdigit() and len(raw) < 16:  # whole seconds: the common case
        return int(raw) * 1000
    text = _string(raw)
    number = _decimal(raw, True) if text is None else _decimal(text, False)
    if number is None:
        raise RecordError(f"the ttl_field '{field}' holds {_shown(raw)}, which is not {_TTL_FORMS}")
    m, p = number
    if m <= 0:
        return 0
    ms = _floor_shift(m, 3 - p) if p <= 3 else max((_floor_shift(2 * m, 3 - p) + 1) // 2, 1)  # half up
    if ms > MAX_TTL_MS:
        raise RecordError(f"the ttl_field '{field}' holds {_shown(raw)}, which is too long a ttl for Redis")
    return ms


def _string(raw: bytes) -> bytes | None:
    """The UTF-8 text of `raw` when it is a JSON string, else None."""
    if raw[:1] != b'"':
        return None
    if b"\\" not in raw and len(raw) >= 2 and raw[-1:] == b'"':
        return raw[1:-1]
    try:
        return msgspec.json.decode(raw, type=str).encode("utf-8", "replace")
    except msgspec.MsgspecError:
        return b""  # not a decimal, not a time: refused with the raw text shown


def _decimal(text: bytes, exponent: bool) -> tuple[int, int] | None:
    """`text` as an exact decimal (m, p), its value being m / 10**p; None when it is not a number
    in JSON's syntax, `-?digits[.digits]`, followed by `[eE][+-]digits` only when `exponent`."""
    if len(text) > _MAX_TEXT:
        return None
    negative = text[:1] == b"-"
    body = text[1:] if negative else text
    power = 0
    if exponent:
        at = body.find(b"e")
        if at < 0:
            at = body.find(b"E")
        if at >= 0:
            body, tail = body[:at], body[at + 1 :]
            digits = tail[1:] if tail[:1] in (b"+", b"-") else tail
            if not digits.isdigit():
                return None
            power = min(int(digits), _MAX_EXPONENT)
            if tail[:1] == b"-":
                power = -power
    whole, dot, fraction = body.partition(b".")
    if not whole.isdigit() or (dot and not fraction.isdigit()):
        return None
    m = int(whole + fraction)
    return (-m if negative else m), len(fraction) - power


def _floor_shift(m: int, shift: int) -> int:
    """floor(m * 10**shift), exactly."""
    scale: int = 10 ** abs(shift)
    return m * scale if shift >= 0 else m // scale


def _rfc3339_ms(text: bytes) -> int | None:
    """The epoch milliseconds (rounded down) of an RFC 3339 date-time; None if `text` is not one.
    A leap second (:60) counts as the second after :59, as POSIX time does."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_hour, off_minute = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_DAY
    except ValueError:  # no such date (2026-02-30), or the year 0000
        return None
    h, mi, s = int(hour), int(minute), int(second)
    if h > 23 or mi > 59 or s > 60:
        return None
    seconds = days * 86400 + h * 3600 + mi * 60 + s
    if sign is not None:
        oh, om = int(off_hour), int(off_minute)
        if oh > 23 or om > 59:
            return None
        seconds += (oh * 3600 + om * 60) * (1 if sign == b"-" else -1)
    return seconds * 1000 + (int(fraction[:3].ljust(3, b"0")) if fraction else 0)


def _shown(raw: bytes) -> str:
    """`raw` as quoted in an error message: its JSON text, cut to about 60 characters."""
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."

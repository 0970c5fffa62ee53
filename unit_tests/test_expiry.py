"""A record's key expiry from its data (writers/expiry.py): how each value is read, which one wins,
what is refused and how, and the hand-packed RESP, byte for byte what hiredis packs."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import hiredis
import msgspec
import pytest

from destination_redis.commands import pack_command
from destination_redis.writers.base import RecordError
from destination_redis.writers.expiry import MAX_MS, MAX_TTL_MS, MIN_MS, Expiry, expire_at_ms, ttl_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
KEYS = [b"users:1", b"", "ns:str\u00e9am \u2603:7".encode(), b"100%:done %s %d", b"we*ird[1]\r\n:x"]


def epoch_ms(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    offset: timedelta = timedelta(0),
    micro: int = 0,
) -> int:
    """The reference: a datetime's epoch milliseconds, rounded down."""
    moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset))
    return (moment - EPOCH) // MS


def json(value: object) -> bytes:
    return msgspec.json.encode(value)


# --- expire_at: numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"0", 0),
        (b"1", 1000),
        (b"1700000000", 1_700_000_000_000),
        (b"100000000000", 100_000_000_000_000),  # 10**11 exactly: still seconds
        (b"100000000001", 100_000_000_001),  # above 10**11: milliseconds
        (b"1700000000000", 1_700_000_000_000),
        (b"99999999999", 99_999_999_999_000),
        (b"9223372036854775807", MAX_MS),  # the largest 64-bit millisecond count
        (b"-1", -1000),
        (b"-0", 0),
        (b"-9223372036854775", -9_223_372_036_854_775_000),
    ],
)
def test_expire_at_integers(raw: bytes, expected: int) -> None:
    assert expire_at_ms(raw, "exp") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"1700000000.5", 1_700_000_000_500),
        (b"1700000000.123", 1_700_000_000_123),  # as float * 1000 this is ...122.99998
        (b"1700000000.1239", 1_700_000_000_123),  # rounded down
        (b"1700000000.0009", 1_700_000_000_000),
        (b"1700000000.000", 1_700_000_000_000),
        (b"1700000000123.9", 1_700_000_000_123),  # milliseconds, rounded down
        (b"100000000000.5", 100_000_000_000),  # above 10**11 by a half: milliseconds
        (b"100000000000.0", 100_000_000_000_000),  # equal to 10**11: seconds
        (b"99999999999.9999", 99_999_999_999_999),
        (b"-0.0005", -1),  # rounded down, toward the past
        (b"-1.5", -1500),
        (b"0.0001", 0),
    ],
)
def test_expire_at_fractions(raw: bytes, expected: int) -> None:
    assert expire_at_ms(raw, "exp") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"1.7e9", 1_700_000_000_000),
        (b"1.7E9", 1_700_000_000_000),
        (b"17e8", 1_700_000_000_000),
        (b"1.7e+9", 1_700_000_000_000),
        (b"1.7e12", 1_700_000_000_000),  # milliseconds
        (b"1700000000500e-3", 1_700_000_000_500),
        (b"1e-400", 0),  # far below a millisecond
        (b"-1e-400", -1),
        (b"1e-99999999999", 0),  # an absurd exponent costs nothing
        (b"0e99999999999", 0),
        (b"1E0", 1000),
    ],
)
def test_expire_at_exponents(raw: bytes, expected: int) -> None:
    assert expire_at_ms(raw, "exp") == expected


def test_expire_at_numbers_match_exact_arithmetic() -> None:
    """Random seconds and milliseconds, whole or with up to 9 fraction digits, against Fraction."""
    rng = random.Random(1234)
    for _ in range(3000):
        whole = rng.choice(
            [rng.randrange(0, 10**10), rng.randrange(10**11 - 5, 10**11 + 5), rng.randrange(10**12)]
        )
        places = rng.randrange(0, 10)
        fraction = rng.randrange(10**places) if places else 0
        text = f"{whole}.{fraction:0{places}d}" if places else f"{whole}"
        value = Fraction(text)
        expected = math.floor(value) if value > 10**11 else math.floor(value * 1000)
        assert expire_at_ms(text.encode(), "exp") == expected, text
        assert expire_at_ms(json(text), "exp") == expected, text  # the same as a decimal string


# --- expire_at: strings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-07T10:00:00Z", epoch_ms(2026, 12, 7, 10, 0, 0)),
        ("2026-12-07t10:00:00z", epoch_ms(2026, 12, 7, 10, 0, 0)),
        ("2026-12-07 10:00:00Z", epoch_ms(2026, 12, 7, 10, 0, 0)),
        ("2026-12-07T10:00:00+00:00", epoch_ms(2026, 12, 7, 10, 0, 0)),
        ("2026-12-07T10:00:00-00:00", epoch_ms(2026, 12, 7, 10, 0, 0)),
        ("2026-12-07T10:00:00.123+02:00", epoch_ms(2026, 12, 7, 10, 0, 0, offset=timedelta(hours=2)) + 123),
        (
            "2026-12-07T10:00:00-05:30",
            epoch_ms(2026, 12, 7, 10, 0, 0, offset=-timedelta(hours=5, minutes=30)),
        ),
        (
            "2026-12-07T23:30:00-23:59",
            epoch_ms(2026, 12, 7, 23, 30, 0, offset=-timedelta(hours=23, minutes=59)),
        ),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999Z", -1),
        ("0001-01-01T00:00:00Z", epoch_ms(1, 1, 1, 0, 0, 0)),
        ("9999-12-31T23:59:59.999999999+14:00", epoch_ms(9999, 12, 31, 9, 59, 59) + 999),
        ("2024-02-29T12:00:00Z", epoch_ms(2024, 2, 29, 12, 0, 0)),  # a leap day
        ("2016-12-31T23:59:60Z", epoch_ms(2017, 1, 1, 0, 0, 0)),  # a leap second: the next second
        ("2001-02-03T04:05:06Z", epoch_ms(2001, 2, 3, 4, 5, 6)),
    ],
)
def test_expire_at_rfc3339(text: str, expected: int) -> None:
    assert expire_at_ms(json(text), "exp") == expected


@pytest.mark.parametrize("digits", range(1, 10))
def test_expire_at_rfc3339_fraction_digits(digits: int) -> None:
    """1 to 9 fraction digits: the instant to the millisecond, the rest cut off (rounded down)."""
    fraction = "987654321"[:digits]
    micro = int(fraction[:6].ljust(6, "0"))
    expected = epoch_ms(2026, 12, 7, 10, 0, 0, offset=timedelta(hours=1), micro=micro)
    assert expire_at_ms(json(f"2026-12-07T10:00:00.{fraction}+01:00"), "exp") == expected


def test_expire_at_rfc3339_matches_datetime() -> None:
    rng = random.Random(99)
    for _ in range(2000):
        moment = EPOCH + timedelta(microseconds=rng.randrange(-2 * 10**16, 8 * 10**16))
        offset = timedelta(minutes=rng.randrange(-23 * 60 - 59, 23 * 60 + 60))
        text = moment.astimezone(timezone(offset)).isoformat()  # +hh:mm, 0 or 6 fraction digits
        assert expire_at_ms(json(text), "exp") == (moment - EPOCH) // MS, text


def test_expire_at_json_escapes() -> None:
    """A string with escapes is decoded as JSON first."""
    assert expire_at_ms(b'"2026-12-07T10:00:00\\u005a"', "exp") == epoch_ms(2026, 12, 7, 10, 0, 0)
    assert expire_at_ms(b'"\\u0031700000000"', "exp") == 1_700_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000", 1_700_000_000_000),
        ("1700000000.5", 1_700_000_000_500),
        ("1700000000000", 1_700_000_000_000),
        ("100000000000", 100_000_000_000_000),
        ("-5", -5000),
        ("0", 0),
        ("0001700000000", 1_700_000_000_000),
    ],
)
def test_expire_at_decimal_strings(text: str, expected: int) -> None:
    assert expire_at_ms(json(text), "exp") == expected


NOT_A_TIME = [
    b"true",
    b"false",
    b"{}",
    b'{"at":1700000000}',
    b"[]",
    b"[1700000000]",
    b'"tomorrow"',
    b'""',
    b'"NaN"',
    b'"nan"',
    b'"Infinity"',
    b'"-Infinity"',
    b'"inf"',
    b"NaN",
    b"Infinity",
    b'"1.7e12"',  # exponents only in JSON numbers
    b'" 1700000000"',
    b'"1700000000 "',
    b'"+1700000000"',
    b'".5"',
    b'"5."',
    b'"1_700_000_000"',
    b'"0x10"',
    b'"--1"',
    b"1_000",
    b"+5",
    b"1.",
    b".5",
    b"1e",
    b"1e+",
    b"1.5.5",
    b"",
    b'"abc',  # not JSON
    b'"\\x"',  # not JSON either
    b'"20261207T100000Z"',  # ISO 8601 basic format: not RFC 3339
    b'"2026-12-07T10:00Z"',  # no seconds
    b'"2026-12-07T10:00:00+0200"',  # offset without its colon
    b'"2026-12-07T10:00:00+02"',
    b'"2026-12-07T10:00:00 Z"',
    b'"2026-12-07T10:00:00.Z"',
    b'"2026-12-07T10:00:00,5Z"',
    b'"2026-12-07_10:00:00Z"',
    b'"2026-12-07T10:00:00ZZ"',
    b'"2026-02-30T10:00:00Z"',  # no such day
    b'"2026-13-01T10:00:00Z"',
    b'"0000-01-01T00:00:00Z"',
    b'"2026-12-07T24:00:00Z"',
    b'"2026-12-07T23:60:00Z"',
    b'"2026-12-07T23:59:61Z"',
    b'"2026-12-07T10:00:00+24:00"',
    b'"2026-12-07T10:00:00+02:60"',
    b'"\xd9\xa1\xd9\xa7\xd9\xa0\xd9\xa0"',  # Arabic-Indic digits are not decimal digits here
    b'"Mon, 07 Dec 2026 10:00:00 GMT"',
    b"1" * 401,  # longer than any time is written
]


@pytest.mark.parametrize("raw", NOT_A_TIME)
def test_expire_at_refuses_what_is_not_a_time(raw: bytes) -> None:
    with pytest.raises(
        RecordError, match=r"^the expire_at_field 'exp' holds .*, which is not a time \("
    ) as exc:
        expire_at_ms(raw, "exp")
    assert not str(exc.value).endswith(".")


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-07T10:00:00",
        "2026-12-07 10:00:00.5",
        "2026-12-07t10:00",
        "2026-12-07T10:00:00.123456",
        "2026-12-07",
    ],
)
def test_expire_at_refuses_times_without_offset(text: str) -> None:
    with pytest.raises(RecordError) as exc:
        expire_at_ms(json(text), "expires_at")
    assert str(exc.value) == (
        f"the expire_at_field 'expires_at' holds \"{text}\", a time without a UTC offset, whose instant is "
        f"ambiguous (add Z or an offset such as +02:00)"
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"9223372036854775808",  # 2**63 ms
        b"10000000000000000000",
        b"-9223372036854776",  # seconds whose milliseconds fall below -2**63
        b"1e400",
        b"-1e400",
        b"1e99999999999",
        b"9223372036854775807.5e3",
        b'"99999999999999999999"',
    ],
)
def test_expire_at_refuses_out_of_range(raw: bytes) -> None:
    with pytest.raises(
        RecordError, match=r"^the expire_at_field 'exp' holds .*, which is out of range for a time"
    ):
        expire_at_ms(raw, "exp")


def test_expire_at_range_edges() -> None:
    assert expire_at_ms(b"9223372036854775807", "exp") == MAX_MS
    assert expire_at_ms(b"-9223372036854775.808", "exp") == MIN_MS
    with pytest.raises(RecordError):
        expire_at_ms(b"-9223372036854775.8081", "exp")


def test_expire_at_message() -> None:
    with pytest.raises(RecordError) as exc:
        expire_at_ms(b'"tomorrow"', "expires_at")
    assert str(exc.value) == (
        "the expire_at_field 'expires_at' holds \"tomorrow\", which is not a time (epoch seconds or "
        "milliseconds, or RFC 3339 text with a UTC offset)"
    )


def test_message_quotes_a_long_value_cut_short() -> None:
    raw = json("x" * 500)
    with pytest.raises(RecordError) as exc:
        expire_at_ms(raw, "exp")
    shown = str(exc.value).split(" holds ", 1)[1].split(", which", 1)[0]
    assert shown == '"' + "x" * 56 + "..."
    with pytest.raises(RecordError) as exc:
        ttl_ms(json({"a": "b" * 100}), "ttl")
    assert '{"a":"bbbb' in str(exc.value)
    assert "..." in str(exc.value)


def test_expire_at_accepts_msgspec_raw() -> None:
    assert expire_at_ms(msgspec.Raw(b"1700000000"), "exp") == 1_700_000_000_000
    assert expire_at_ms(msgspec.Raw(b'"2026-12-07T10:00:00Z"'), "exp") == epoch_ms(2026, 12, 7, 10, 0, 0)


# --- ttl ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"60", 60_000),
        (b"1", 1000),
        (b"0", 0),
        (b"-0", 0),
        (b"-5", 0),  # not positive: the key is deleted
        (b"-0.0001", 0),
        (b"0.0", 0),
        (b"1.5", 1500),
        (b"1.0", 1000),
        (b"0.25", 250),
        (b"0.001", 1),
        (b"0.0001", 1),  # positive: at least one millisecond
        (b"0.0004", 1),
        (b"0.0005", 1),
        (b"0.0015", 2),  # to the nearest millisecond, a half up
        (b"0.0014", 1),
        (b"1.0004", 1000),
        (b"1.0005", 1001),
        (b"2.9995", 3000),
        (b"1e3", 1_000_000),
        (b"1e-3", 1),
        (b"1.5E+1", 15_000),
        (b"1e-400", 1),
        (b"-1e400", 0),
        (b"86400", 86_400_000),
        (b"999999999999999", 999_999_999_999_999_000),
        (b'"30"', 30_000),
        (b'"0.25"', 250),
        (b'"-1"', 0),
        (b'"0"', 0),
    ],
)
def test_ttl(raw: bytes, expected: int) -> None:
    assert ttl_ms(raw, "ttl") == expected


def test_ttl_matches_exact_arithmetic() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        places = rng.randrange(0, 8)
        text = f"{rng.randrange(0, 10**7)}" + (f".{rng.randrange(10**places):0{places}d}" if places else "")
        value = Fraction(text) * 1000
        expected = 0 if value <= 0 else max(math.floor(value + Fraction(1, 2)), 1)
        assert ttl_ms(text.encode(), "ttl") == expected, text


@pytest.mark.parametrize(
    "raw",
    [
        b"true",
        b"false",
        b"{}",
        b"[]",
        b"[60]",
        b'"1e3"',
        b'"sixty"',
        b'"NaN"',
        b'"Infinity"',
        b'"2026-12-07T10:00:00Z"',  # a time is not a ttl
        b'" 60"',
        b'""',
        b"NaN",
        b"",
    ],
)
def test_ttl_refuses_what_is_not_seconds(raw: bytes) -> None:
    with pytest.raises(RecordError) as exc:
        ttl_ms(raw, "ttl_s")
    shown = raw.decode("utf-8", "replace")
    assert str(exc.value) == (
        f"the ttl_field 'ttl_s' holds {shown}, which is not a number of seconds, as a JSON number or a "
        f"decimal string"
    )


@pytest.mark.parametrize(
    "raw", [b"9223372036854775807", b"10000000000000000", b"1e400", b'"9223372036854775"']
)
def test_ttl_refuses_too_long(raw: bytes) -> None:
    with pytest.raises(
        RecordError, match=r"^the ttl_field 'ttl' holds .*, which is too long a ttl for Redis$"
    ):
        ttl_ms(raw, "ttl")


def test_ttl_edge_of_too_long() -> None:
    """The ttl leaves the server's clock room (up to the year 2286) before 64 bits overflow."""
    seconds, remainder = divmod(MAX_TTL_MS, 1000)
    assert ttl_ms(b"%d.%03d" % (seconds, remainder), "ttl") == MAX_TTL_MS
    with pytest.raises(RecordError):
        ttl_ms(b"%d.%03d" % (seconds, remainder + 1), "ttl")


# --- Expiry: the command per record ---------------------------------------------------------------


def resp(*command: bytes | int) -> bytes:
    return pack_command(tuple(command))


@pytest.mark.parametrize("key", KEYS)
def test_pack_expire_at_matches_hiredis(key: bytes) -> None:
    expiry = Expiry("exp", None, None)
    for raw, ms in [
        (b"1700000000", 1_700_000_000_000),
        (b"1700000000.5", 1_700_000_000_500),
        (b"-1", -1000),
        (b"0", 0),
        (b'"2026-12-07T10:00:00Z"', epoch_ms(2026, 12, 7, 10, 0, 0)),
        (b"9223372036854775807", MAX_MS),
    ]:
        assert expiry.pack(key, [raw]) == resp(b"PEXPIREAT", key, ms)
        assert expiry.pack(key, [msgspec.Raw(raw)]) == resp(b"PEXPIREAT", key, ms)


@pytest.mark.parametrize("key", KEYS)
def test_pack_ttl_matches_hiredis(key: bytes) -> None:
    expiry = Expiry(None, "ttl", None)
    assert expiry.pack(key, [b"60"]) == resp(b"EXPIRE", key, 60)
    assert expiry.pack(key, [b"1.0"]) == resp(b"EXPIRE", key, 1)
    assert expiry.pack(key, [b'"3600"']) == resp(b"EXPIRE", key, 3600)
    assert expiry.pack(key, [b"2.9995"]) == resp(b"EXPIRE", key, 3)  # 3000 ms: whole seconds
    assert expiry.pack(key, [b"1.5"]) == resp(b"PEXPIRE", key, 1500)
    assert expiry.pack(key, [b"0.0001"]) == resp(b"PEXPIRE", key, 1)
    assert expiry.pack(key, [b"0"]) == resp(b"PEXPIRE", key, 0)  # deletes the key
    assert expiry.pack(key, [b"-30"]) == resp(b"PEXPIRE", key, 0)
    assert expiry.pack(key, [msgspec.Raw(b"60")]) == resp(b"EXPIRE", key, 60)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("ttl_seconds", [None, 0, 3600, 1])
@pytest.mark.parametrize(
    ("expire_at_field", "ttl_field"), [(None, None), ("exp", None), (None, "ttl"), ("exp", "ttl")]
)
def test_pack_fallback_matches_hiredis(
    key: bytes, ttl_seconds: int | None, expire_at_field: str | None, ttl_field: str | None
) -> None:
    """Null or absent values: the stream's ttl_seconds, or PERSIST (one reply all the same)."""
    expiry = Expiry(expire_at_field, ttl_field, ttl_seconds)
    expected = resp(b"EXPIRE", key, ttl_seconds) if ttl_seconds else resp(b"PERSIST", key)
    for missing in (None, b"null", msgspec.Raw(b"null")):
        assert expiry.pack(key, [missing] * len(expiry.fields)) == expected


def test_pack_precedence() -> None:
    expiry = Expiry("exp", "ttl", 3600)
    key = b"k:1"
    at = resp(b"PEXPIREAT", key, 1_700_000_000_000)
    assert expiry.pack(key, [b"1700000000", b"60"]) == at  # expire_at wins where present
    assert expiry.pack(key, [b"1700000000", None]) == at
    assert expiry.pack(key, [b"1700000000", b'"not a ttl"']) == at  # the ttl is not even read
    assert expiry.pack(key, [b"null", b"60"]) == resp(b"EXPIRE", key, 60)
    assert expiry.pack(key, [None, b"0.5"]) == resp(b"PEXPIRE", key, 500)
    assert expiry.pack(key, [None, None]) == resp(b"EXPIRE", key, 3600)
    assert expiry.pack(key, [b"null", b"null"]) == resp(b"EXPIRE", key, 3600)
    with pytest.raises(RecordError, match="expire_at_field 'exp'"):
        expiry.pack(key, [b'"soon"', b"60"])  # present but not a time: refused, not passed over
    with pytest.raises(RecordError, match="ttl_field 'ttl'"):
        expiry.pack(key, [b"null", b"true"])


def test_pack_is_one_command() -> None:
    expiry = Expiry("exp", "ttl", 60)
    for values in ([b"1", None], [None, b"2"], [None, b"2.5"], [None, None]):
        reader = hiredis.Reader()
        reader.feed(expiry.pack(b"k", values))
        assert isinstance(reader.gets(), list)
        assert reader.gets() is False  # nothing more


def test_fields_and_flags() -> None:
    assert Expiry(None, None, None).fields == ()
    assert Expiry(None, None, 60).fields == ()
    assert Expiry("exp", None, None).fields == ("exp",)
    assert Expiry(None, "ttl", None).fields == ("ttl",)
    assert Expiry("exp", "ttl", 60).fields == ("exp", "ttl")
    assert Expiry("", "", 60).fields == ()  # an empty name is no field
    assert not Expiry(None, None, 60).from_data
    assert Expiry("exp", None, None).from_data
    assert Expiry(None, "ttl", 0).from_data
    assert not Expiry(None, None, None).active
    assert not Expiry(None, None, 0).active
    assert Expiry(None, None, 60).active
    assert Expiry(None, "ttl", None).active


@pytest.mark.parametrize(
    ("expiry", "described"),
    [
        (Expiry("expires_at", None, 3600), "expire_at_field 'expires_at', else ttl_seconds 3600"),
        (Expiry("expires_at", None, None), "expire_at_field 'expires_at', else no expiry"),
        (Expiry(None, "ttl", 0), "ttl_field 'ttl', else no expiry"),
        (Expiry("a", "b", 60), "expire_at_field 'a', else ttl_field 'b', else ttl_seconds 60"),
        (Expiry(None, None, 60), "ttl_seconds 60"),
        (Expiry(None, None, None), "no expiry"),
    ],
)
def test_describe(expiry: Expiry, described: str) -> None:
    assert expiry.describe() == described

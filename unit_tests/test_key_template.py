"""key_template: parsing and its refusals, rendering byte for byte, shapes, and the collision check."""

from __future__ import annotations

import itertools
import random

import pytest

from destination_redis.key_template import KeyTemplate, Placeholder, TemplateError, could_collide


def P(*path: str) -> Placeholder:
    return Placeholder(path)


# --- parsing


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("user:{id}", ("user:", P("id"))),
        ("{id}", (P("id"),)),
        ("{tenant}:orders:{order.id}", (P("tenant"), ":orders:", P("order", "id"))),
        ("t:{{{tenant}}}:u:{id}", ("t:{", P("tenant"), "}:u:", P("id"))),
        ("{a}{b}", (P("a"), P("b"))),
        ("a{{b}}c{x}", ("a{b}c", P("x"))),
        ("{a}}}", (P("a"), "}")),
        ("{{{{{x}", ("{{", P("x"))),
        ("{a.b.c.d}", (P("a", "b", "c", "d"),)),
        ("{ first name }:x", (P(" first name "), ":x")),
        ("{a-b c:d.e/f*?}", (P("a-b c:d", "e/f*?"),)),
        ("café:{ñ.ü}", ("café:", P("ñ", "ü"))),
    ],
)
def test_parse_splits_literals_and_placeholders(text: str, parts: tuple[str | Placeholder, ...]) -> None:
    template = KeyTemplate.parse(text)
    assert template.parts == parts
    assert template.text == text


def test_paths_keep_duplicates_and_top_level_is_distinct_in_first_seen_order() -> None:
    template = KeyTemplate.parse("{b.x}:{a}:{b.y}:{a}")
    assert template.paths == (("b", "x"), ("a",), ("b", "y"), ("a",))
    assert template.top_level == ("b", "a")


def test_templates_compare_and_hash_by_their_text() -> None:
    assert KeyTemplate.parse("x:{a.b}") == KeyTemplate.parse("x:{a.b}")
    assert hash(KeyTemplate.parse("x:{a.b}")) == hash(KeyTemplate.parse("x:{a.b}"))
    assert KeyTemplate.parse("x:{a.b}") != KeyTemplate.parse("x:{a}")


# --- refusals


def test_unclosed_brace_message_in_full() -> None:
    with pytest.raises(TemplateError) as caught:
        KeyTemplate.parse("user:{id")
    assert str(caught.value) == (
        "key_template 'user:{id' has an unbalanced brace: '{' at position 5 is never closed "
        "(write '{{' for a literal brace)"
    )


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("user:{id", ["unbalanced brace", "'{' at position 5 is never closed", "'{{'"]),
        ("{", ["unbalanced brace", "'{' at position 0 is never closed"]),
        ("{{{x", ["unbalanced brace", "'{' at position 2 is never closed"]),
        ("a}b:{x}", ["unbalanced brace", "'}' at position 1 has no opening '{'", "'}}'"]),
        ("{x}}", ["unbalanced brace", "'}' at position 3 has no opening '{'"]),
        ("{{x}", ["unbalanced brace", "'}' at position 3"]),
        ("a{b{c}", ["unbalanced brace", "'{' at position 3 is inside the placeholder opened at position 1"]),
        ("{a{{b}", ["unbalanced brace", "'{' at position 2 is inside the placeholder opened at position 0"]),
        ("user:{}", ["empty placeholder '{}' at position 5", "{id}"]),
        ("{a..b}", ["empty path segment", "'{a..b}' at position 0", "'..' at position 2"]),
        ("x:{a.b..c}", ["empty path segment", "'{a.b..c}' at position 2", "'..' at position 6"]),
        ("{.a}", ["empty path segment", "'{.a}' at position 0", "starts with '.' (position 1)"]),
        ("x{a.}", ["empty path segment", "'{a.}' at position 1", "ends with '.' (position 3)"]),
        ("{.}", ["empty path segment", "starts with '.'"]),
        ("users", ["no placeholder", "every record would get the same key", "{id}"]),
        ("{{id}}", ["no placeholder", "literal braces"]),
        ("", ["key_template ''", "is empty"]),
    ],
)
def test_refusals_quote_the_template_and_say_what_and_where(text: str, fragments: list[str]) -> None:
    with pytest.raises(TemplateError) as caught:
        KeyTemplate.parse(text)
    message = str(caught.value)
    assert message.startswith(f"key_template {text!r} ")
    for fragment in fragments:
        assert fragment in message


def test_template_error_is_a_value_error() -> None:
    """So pydantic validators and callers catching ValueError see it."""
    with pytest.raises(ValueError, match="no placeholder"):
        KeyTemplate.parse("users")


def test_the_first_problem_is_reported() -> None:
    with pytest.raises(TemplateError, match="position 1 has no opening"):
        KeyTemplate.parse("a}{}")


# --- render


def test_render_prepends_the_prefix_and_inserts_values_in_order() -> None:
    template = KeyTemplate.parse("{tenant}:orders:{order.id}")
    assert template.render(b"app:", [b"acme", b"42"]) == b"app:acme:orders:42"
    assert template.render(b"", (b"acme", b"42")) == b"acme:orders:42"


def test_render_hash_tag() -> None:
    assert KeyTemplate.parse("t:{{{tenant}}}:u:{id}").render(b"", [b"acme", b"5"]) == b"t:{acme}:u:5"


def test_render_encodes_literal_text_as_utf8() -> None:
    template = KeyTemplate.parse("café:{id}:ü€")
    assert template.render("préfixe:".encode(), [b"1"]) == "préfixe:café:1:ü€".encode()


def test_render_inserts_values_as_they_are() -> None:
    """No escaping: braces, colons, % and even bytes that are not UTF-8 are kept."""
    template = KeyTemplate.parse("t:{{{tenant}}}:u:{id}")
    rendered = template.render(b"p%s:", [b"ac}me{", b"5:{x}%s%%\xff"])
    assert rendered == b"p%s:t:{ac}me{}:u:5:{x}%s%%\xff"


def test_render_literal_percent_signs() -> None:
    assert KeyTemplate.parse("100%:{id}%s%%b").render(b"%", [b"7"]) == b"%100%:7%s%%b"


def test_render_empty_values_and_adjacent_placeholders() -> None:
    template = KeyTemplate.parse("{a}{b}:{c}")
    assert template.render(b"", [b"", b"x", b""]) == b"x:"
    assert template.render(b"k:", [b"1", b"2", b"3"]) == b"k:12:3"


def test_render_one_value_per_placeholder_duplicates_included() -> None:
    template = KeyTemplate.parse("{id}:{id}")
    assert template.render(b"", [b"1", b"1"]) == b"1:1"
    with pytest.raises(ValueError, match="takes 2 values, got 1"):
        template.render(b"", [b"1"])
    with pytest.raises(ValueError, match="takes 2 values, got 3"):
        template.render(b"", [b"1", b"2", b"3"])


# --- shape


@pytest.mark.parametrize(
    ("text", "prefix", "shape"),
    [
        ("user:{id}", "app:", "app:user:<id>"),
        ("user:{id}", "", "user:<id>"),
        ("t:{{{tenant}}}:u:{a.b}", "", "t:{<tenant>}:u:<a.b>"),
        ("{a}{b.c}", "p", "p<a><b.c>"),
        ("x}}{{{y}", "", "x}{<y>"),
    ],
)
def test_shape(text: str, prefix: str, shape: str) -> None:
    assert KeyTemplate.parse(text).shape(prefix) == shape


def test_shape_default_prefix_is_empty() -> None:
    assert KeyTemplate.parse("user:{id}").shape() == "user:<id>"


# --- could_collide


@pytest.mark.parametrize(
    ("a", "b", "collide"),
    [
        ("user:{id}", "user:{email}", True),
        ("user:{id}", "order:{id}", False),
        ("user:{id}", "user:{id}:profile", True),  # id = "5:profile"
        ("a:{x}:b", "a:{y}:c", False),
        ("{x}:b", "a:{y}", True),
        ("u{x}", "v{x}", False),
        ("x{a}y", "x{b}z", False),
        ("user:{id}", "user:{id}", True),
        ("{a}{b}", "{c}", True),
        ("{a}", "anything:{b}:at:all", True),
        ("a{x}b{y}c", "a{z}c", True),
        ("a{x}b{y}c", "a{z}d", False),
        ("ab{x}", "a{y}", True),
        ("ab{x}", "ac{y}", False),
        ("{x}ab", "{y}cb", False),
        ("{{{x}", "{y}", True),
        ("{{{x}", "}}{y}", False),
        ("é{x}", "e{x}", False),
        ("{x}:é", "{y}é", True),
    ],
)
def test_could_collide(a: str, b: str, collide: bool) -> None:
    ta, tb = KeyTemplate.parse(a), KeyTemplate.parse(b)
    assert could_collide(ta, tb) is collide
    assert could_collide(tb, ta) is collide


# Brute force: every placeholder takes every value over {a, :} of length 0..3 (independently, as
# could_collide assumes), and two templates collide when their sets of keys meet.
_VALUES = [b"".join(chars) for n in range(4) for chars in itertools.product([b"a", b":"], repeat=n)]


def _random_template(rng: random.Random, max_tokens: int) -> KeyTemplate:
    """A template over {a, :, placeholder} with 1..3 placeholders (each named apart)."""
    while True:
        tokens = [rng.choice(["a", ":", "P"]) for _ in range(rng.randint(1, max_tokens))]
        if 1 <= tokens.count("P") <= 3:
            break
    names = iter(range(len(tokens)))
    return KeyTemplate.parse("".join(f"{{p{next(names)}}}" if t == "P" else t for t in tokens))


def _all_keys(template: KeyTemplate, cache: dict[str, set[bytes]]) -> set[bytes]:
    if template.text not in cache:
        cache[template.text] = {
            template.render(b"", values) for values in itertools.product(_VALUES, repeat=len(template.paths))
        }
    return cache[template.text]


def test_could_collide_agrees_with_brute_force_on_small_templates() -> None:
    """Templates of up to 4 tokens: a collision, when there is one, needs values of at most 3
    characters (the other template's literal text), so the brute force is exact here."""
    rng = random.Random(20240601)
    cache: dict[str, set[bytes]] = {}
    outcomes = set()
    for _ in range(1500):
        a, b = _random_template(rng, 4), _random_template(rng, 4)
        brute = bool(_all_keys(a, cache) & _all_keys(b, cache))
        assert could_collide(a, b) is brute, (a.text, b.text)
        outcomes.add(brute)
    assert outcomes == {True, False}


def test_could_collide_whenever_brute_force_finds_a_collision() -> None:
    """Longer templates: the bounded brute force may miss a collision, but one it finds is real."""
    rng = random.Random(7)
    cache: dict[str, set[bytes]] = {}
    found = missed = 0
    for _ in range(1500):
        a, b = _random_template(rng, 6), _random_template(rng, 6)
        collide = could_collide(a, b)
        assert collide is could_collide(b, a)
        if _all_keys(a, cache) & _all_keys(b, cache):
            assert collide, (a.text, b.text)
            found += 1
        elif not collide:
            missed += 1
    assert found > 0
    assert missed > 0


def _edges_compatible(a: KeyTemplate, b: KeyTemplate) -> bool:
    """An independent oracle: with at least one placeholder on each side, two templates collide
    exactly when their literal prefixes agree (one starts the other) and so do their suffixes."""

    def edge(template: KeyTemplate, index: int) -> str:
        part = template.parts[index]
        return part if isinstance(part, str) else ""

    pa, pb, sa, sb = edge(a, 0), edge(b, 0), edge(a, -1), edge(b, -1)
    return (pa.startswith(pb) or pb.startswith(pa)) and (sa.endswith(sb) or sb.endswith(sa))


def test_could_collide_agrees_with_the_prefix_and_suffix_rule_on_long_templates() -> None:
    rng = random.Random(99)
    outcomes = set()
    for _ in range(2000):
        texts = []
        for _side in range(2):
            tokens = [rng.choice(["a", "b", ":", "{{", "}}", "{x}"]) for _ in range(rng.randint(1, 12))]
            tokens.insert(rng.randint(0, len(tokens)), "{y}")
            texts.append("".join(tokens))
        a, b = KeyTemplate.parse(texts[0]), KeyTemplate.parse(texts[1])
        expected = _edges_compatible(a, b)
        assert could_collide(a, b) is expected, (a.text, b.text)
        outcomes.add(expected)
    assert outcomes == {True, False}

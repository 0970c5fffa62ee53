"""The user's documentation (docs/redis.md) and the README keep up with the code.

Every field of the configuration form (spec.json: top level, nested objects, oneOf branches, array
items) is named in docs/redis.md by its path in backticks (`port`, `ssl_mode.ca_certificate`,
`streams[].key_template`, `search_index.vector_fields[].dims`), and where the form has a default
the table row of that field shows it. The changelog has setup.py's version. The README stays a
developer's page that points to the docs, and neither page cites tracker issues.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "redis.md"
README = ROOT / "README.md"
SPEC: dict[str, Any] = json.loads((ROOT / "destination_redis" / "spec.json").read_text())
TOP: dict[str, Any] = SPEC["connectionSpecification"]["properties"]

README_MAX_LINES = 260
ISSUE_NUMBER = re.compile(r"[Ii]ssue\s*#?\d")


def _without_order(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "order"}


def _shares_top_level_schema(name: str, schema: dict[str, Any]) -> bool:
    """A nested property with the very schema of the top-level one of that name (a stream's
    `search_index`): its fields are documented once, under the top-level name."""
    top = TOP.get(name)
    return top is not None and _without_order(top) == _without_order(schema)


def _fields(properties: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every field under `properties`: nested objects as `a.b`, oneOf branches
    under their property's name, items of arrays of objects as `a[].b`."""
    for name, schema in properties.items():
        path = f"{prefix}{name}"
        yield path, schema
        if prefix and _shares_top_level_schema(name, schema):
            continue
        yield from _fields(schema.get("properties", {}), f"{path}.")
        for branch in schema.get("oneOf", []):
            yield from _fields(branch.get("properties", {}), f"{path}.")
        yield from _fields(schema.get("items", {}).get("properties", {}), f"{path}[].")


FIELDS: dict[str, dict[str, Any]] = {}
for _path, _schema in _fields(TOP):
    FIELDS.setdefault(_path, _schema)  # a field of two oneOf branches (tunnel_host) once


def _docs() -> str:
    return DOCS.read_text(encoding="utf-8")


def _configuration_section(text: str) -> str:
    """The "### Configuration" section of the page, up to the next heading of its level or above."""
    found = re.search(r"^### Configuration\n(.*?)(?=^#{1,3} )", text, flags=re.MULTILINE | re.DOTALL)
    assert found, "docs/redis.md has no '### Configuration' section"
    return found[1]


def _table_row(text: str, path: str) -> str | None:
    """The first table row whose first cell is `path` in backticks."""
    for line in text.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2 and cells[1].strip() == f"`{path}`":
            return line
    return None


def _shown_defaults(default: Any) -> set[str]:
    """How a default may be written in its row: as JSON, or a string without its quotes."""
    shown = {f"`{json.dumps(default, ensure_ascii=False)}`"}
    if isinstance(default, str) and default:
        shown.add(f"`{default}`")
    return shown


def test_the_spec_walk_finds_nested_fields() -> None:
    """The walk reaches every kind of nesting the form has (a guard for the tests below)."""
    for path in (
        "host", "ssl_mode.mode", "ssl_mode.client_key_password", "tunnel_method.ssh_key",
        "topology.sentinel_password", "streams[].key_template", "streams[].search_index",
        "search_index.vector_fields[].distance_metric", "search_index.indexing_timeout_seconds",
    ):
        assert path in FIELDS, path
    assert not any(path.startswith("streams[].search_index.") for path in FIELDS)


@pytest.mark.parametrize("path", sorted(FIELDS))
def test_every_configuration_field_is_documented(path: str) -> None:
    assert f"`{path}`" in _docs(), f"docs/redis.md does not name the configuration field `{path}`"


@pytest.mark.parametrize(
    "path", sorted(p for p, s in FIELDS.items() if "default" in s and "const" not in s)
)
def test_every_default_is_shown_beside_its_field(path: str) -> None:
    row = _table_row(_configuration_section(_docs()), path)
    assert row is not None, f"docs/redis.md's Configuration section has no table row for `{path}`"
    shown = _shown_defaults(FIELDS[path]["default"])
    assert any(s in row for s in shown), f"the row of `{path}` does not show its default {shown}: {row}"


def _setup_version() -> str:
    found = re.search(r"""\bversion\s*=\s*["']([^"']+)["']""", (ROOT / "setup.py").read_text())
    assert found, "setup.py has no version="
    return found[1]


def test_the_changelog_has_the_current_version() -> None:
    docs = _docs()
    assert "## Changelog" in docs
    changelog = docs.split("## Changelog", 1)[1]
    versions = re.findall(r"^\|\s*(\d+\.\d+\.\d+)\s*\|", changelog, flags=re.MULTILINE)
    assert _setup_version() in versions, f"the changelog lists {versions}, not setup.py's {_setup_version()}"


def test_the_metadata_documentation_url_is_the_page_of_docs_redis_md() -> None:
    """Airbyte's tooling finds a connector's page from documentationUrl's last path segment
    (docs/integrations/destinations/redis.md in Airbyte's repository): here, docs/redis.md."""
    metadata = (ROOT / "metadata.yaml").read_text()
    found = re.search(r"^\s*documentationUrl:\s*(\S+)\s*$", metadata, re.MULTILINE)
    assert found, "metadata.yaml has no documentationUrl"
    assert found[1] == SPEC["documentationUrl"]
    assert (ROOT / "docs" / f"{found[1].rstrip('/').rsplit('/', 1)[1]}.md") == DOCS


def test_the_readme_is_short_and_links_the_docs() -> None:
    readme = README.read_text(encoding="utf-8")
    lines = len(readme.splitlines())
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; user documentation goes to docs/redis.md"
    assert "](docs/redis.md" in readme, "README.md does not link docs/redis.md"


@pytest.mark.parametrize("page", [README, DOCS], ids=["README.md", "docs/redis.md"])
def test_no_issue_numbers_in_product_documentation(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    found = [line.strip() for line in text.splitlines() if ISSUE_NUMBER.search(line)]
    assert not found, f"{page.name} cites tracker issues: {found}"

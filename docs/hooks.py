"""MkDocs hooks: pages generated at build time, so that no reference is typed twice.

- `configuration.md`: the marker ``<!-- config-reference -->`` becomes a table of every key of
  `schemas/config.schema.yaml` (path, type, default, description), read with `yaml.safe_load`;
- `index.md`: the repository's README.md, its links into `docs/` made relative to the site;
- `changelog.md`: the repository's CHANGELOG.md, which lives beside the README.

tests/test_docs.py imports `config_reference` from here and runs `mkdocs build --strict`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
MARKER = "<!-- config-reference -->"


def _resolve(node: dict, schema: dict) -> dict:
    reference = node.get("$ref")
    if not reference:
        return node
    target: Any = schema
    for part in reference.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _type(node: dict) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in node["enum"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind is None and "anyOf" in node:
        return " or ".join(_type(option) for option in node["anyOf"])
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"list of {_type(node['items'])}"
    return kind or "any"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(node: dict, path: str, schema: dict) -> list[tuple[str, str, str, str]]:
    node = _resolve(node, schema)
    rows = []
    if path:
        default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
        rows.append((f"`{path}`", _cell(_type(node)), default, _cell(node.get("description", ""))))
    for key, child in node.get("properties", {}).items():
        rows += _rows(child, f"{path}.{key}" if path else key, schema)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and ("properties" in extra or "$ref" in extra):
        rows += _rows(extra, f"{path}.<name>", schema)
    return rows


def config_reference(schema_path: Path = SCHEMA) -> str:
    """The Markdown table of every configuration key, in the schema's order."""
    schema = yaml.safe_load(schema_path.read_text())
    lines = [
        "| key | type | default | description |",
        "|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in _rows(schema, "", schema)),
    ]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, config_reference())
    return markdown


def home_page(readme: str) -> str:
    """The README as the site's home page: links into docs/ and to the changelog rewritten."""
    return readme.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")


def on_files(files, config):
    from mkdocs.structure.files import File

    home = home_page((REPO / "README.md").read_text())
    files.append(File.generated(config, "index.md", content=home))
    files.append(
        File.generated(config, "changelog.md", content=(REPO / "CHANGELOG.md").read_text())
    )
    return files

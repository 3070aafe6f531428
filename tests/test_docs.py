"""The README is a landing page and the documentation a MkDocs site that builds without a
broken link; the configuration reference is generated from the schema, not typed."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _schema_paths(node: dict, schema: dict, path: str = "") -> set[str]:
    if "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    paths = {path} if path else set()
    for key, child in node.get("properties", {}).items():
        paths |= _schema_paths(child, schema, f"{path}.{key}" if path else key)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and ("properties" in extra or "$ref" in extra):
        paths |= _schema_paths(extra, schema, f"{path}.<name>")
    return paths


def test_the_configuration_reference_lists_every_schema_key_once():
    schema = yaml.safe_load((REPO / "schemas/config.schema.yaml").read_text())
    table = _hooks().config_reference()
    listed = re.findall(r"^\| `([^`]+)` \|", table, re.M)
    assert len(listed) == len(set(listed))
    assert set(listed) == _schema_paths(schema, schema)
    assert "experiments.<name>.vae.rank_normalization" in listed
    row = next(line for line in table.splitlines() if "`experiments.<name>.train.epochs`" in line)
    assert "integer" in row


def test_the_configuration_page_has_the_marker_the_hook_replaces():
    page = (REPO / "docs/configuration.md").read_text()
    assert page.count(_hooks().MARKER) == 1


def test_the_readme_is_a_landing_page_whose_links_resolve():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert any(target.startswith("docs/") for target in targets)
    for target in targets:
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
    # The site's home page is the README with its links made relative to docs/.
    home = _hooks().home_page(readme)
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", home):
        assert (REPO / "docs" / target).exists() or target == "changelog.md", target


def test_every_page_is_in_the_navigation():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())

    def pages(nav) -> set[str]:
        found = set()
        for entry in nav:
            for value in entry.values():
                found |= pages(value) if isinstance(value, list) else {value}
        return found

    on_disk = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    generated = {"index.md", "changelog.md"}
    assert pages(config["nav"]) == on_disk | generated


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: no broken link or anchor, no page outside the navigation."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        if os.environ.get("TAVAAL_REQUIRE_MKDOCS") == "1":
            pytest.fail("mkdocs is not installed (pip install -e '.[docs]')")
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site/configuration/index.html").read_text().count("<tr>") > 100
    assert (tmp_path / "site/changelog/index.html").exists()

"""The provider info and the package metadata: everything they name exists and imports."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

from airflow_provider_kontext import get_provider_info

ROOT = Path(__file__).resolve().parents[1]


def _import(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_module_and_class_the_provider_info_names_imports() -> None:
    info = get_provider_info()
    for kind in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[kind]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for decorator in info["task-decorators"]:
        assert callable(_import(decorator["class-name"])), decorator
    assert {d["name"] for d in info["task-decorators"]} == {"kontext", "kontext_batch"}
    for link in info["extra-links"]:
        _import(link)
    for connection in info["connection-types"]:
        _import(connection["hook-class-name"])


def test_the_integration_is_tagged_and_its_how_to_guides_exist() -> None:
    (integration,) = get_provider_info()["integrations"]
    assert {"ai", "generative-ai"} <= set(integration["tags"])
    guides = integration["how-to-guide"]
    assert guides
    for guide in guides:
        assert (ROOT / guide.lstrip("/")).is_file(), guide


def test_the_package_metadata_has_a_status_and_project_urls() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(c.startswith("Development Status :: ") for c in project["classifiers"])
    assert project["urls"]
    assert all(url.startswith("https://") for url in project["urls"].values())


def test_the_readme_links_the_docs_and_the_changelog() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\(((?:docs/[\w.-]+\.md)|CHANGELOG\.md)\)", readme))
    assert {"docs/connection.md", "docs/operators.md", "docs/sensor.md", "CHANGELOG.md"} <= linked
    for path in linked:
        assert (ROOT / path).is_file(), path

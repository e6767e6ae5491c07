"""The docs say what the code does: docs/market.md's model table is the one the catalog generates."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def catalog_table() -> dict[str, Any]:
    """``scripts/catalog-table``'s functions, loaded without running it."""
    return runpy.run_path(str(ROOT / "scripts" / "catalog-table"), run_name="catalog_table")


def test_the_market_docs_table_is_the_catalogs(catalog_table: dict[str, Any]) -> None:
    doc = (ROOT / "docs" / "market.md").read_text(encoding="utf-8")
    assert catalog_table["between_markers"](doc) == catalog_table["table"](), (
        "docs/market.md's model table differs from the catalog: run `.venv/bin/python scripts/catalog-table --write`"
    )


def test_the_table_has_a_row_for_every_catalogued_model_and_dates_its_prices(catalog_table: dict[str, Any]) -> None:
    from airflow_provider_kontext._protocol.catalog import PRICES_AS_OF, catalog_models

    table = catalog_table["table"]()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(catalog_models())
    assert PRICES_AS_OF in table.splitlines()[0]


def test_a_model_without_a_name_stops_the_script(catalog_table: dict[str, Any]) -> None:
    """A model added to the catalog needs a name in the script before the docs can be regenerated."""
    with pytest.raises(SystemExit, match="acme/new-model"):
        catalog_table["name_of"]("acme/new-model")

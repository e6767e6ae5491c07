"""``python -m airflow_provider_kontext.emulator``: same as the ``kontext-emulator`` command."""

from __future__ import annotations

from airflow_provider_kontext.emulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

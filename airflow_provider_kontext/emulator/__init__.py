"""A local, kie.ai-compatible Flux Kontext and Market jobs API for tests, demos and benchmarks.

``EmulatorServer`` runs it on loopback in a thread; ``create_app`` gives the FastAPI app to run
any other way; ``kontext-emulator`` (``python -m airflow_provider_kontext.emulator``) runs it from
the command line. Exports resolve lazily: importing this package pulls in neither FastAPI nor
Pillow, which only load when an app is built or an image is rendered.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_kontext.emulator.app import create_app
    from airflow_provider_kontext.emulator.config import EmulatorConfig
    from airflow_provider_kontext.emulator.server import EmulatorServer
    from airflow_provider_kontext.emulator.state import EmulatorState

__all__ = ["EmulatorConfig", "EmulatorServer", "EmulatorState", "create_app"]

_EXPORTS = {
    "EmulatorConfig": "airflow_provider_kontext.emulator.config",
    "EmulatorServer": "airflow_provider_kontext.emulator.server",
    "EmulatorState": "airflow_provider_kontext.emulator.state",
    "create_app": "airflow_provider_kontext.emulator.app",
}


def __getattr__(name: str) -> Any:
    """Import an export on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""Apache Airflow provider for Kie.ai's Flux Kontext image generation and editing API.

Importing this package is cheap on purpose: the DAG processor imports it for every DAG file
that uses the provider, so nothing here imports Airflow, requests or aiohttp.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's ProvidersManager (the ``apache_airflow_provider`` entry point)."""
    from airflow_provider_kontext._protocol.extras import CONN_FIELDS

    return {
        "package-name": "airflow-provider-kontext",
        "name": "Kie.ai Flux Kontext",
        "description": (
            "Generate and edit images with Kie.ai's Flux Kontext API and its Market models "
            "(FLUX.2, Nano Banana, Seedream, GPT Image, ...) from Airflow DAGs."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Kie.ai Flux Kontext",
                "external-doc-url": "https://docs.kie.ai/flux-kontext-api/quickstart",
                "how-to-guide": ["/docs/connection.md", "/docs/operators.md", "/docs/sensor.md"],
                "tags": ["ai", "generative-ai", "service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Kie.ai Flux Kontext",
                "python-modules": [
                    "airflow_provider_kontext.hooks.kontext",
                    "airflow_provider_kontext.hooks.async_client",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Kie.ai Flux Kontext",
                "python-modules": [
                    "airflow_provider_kontext.operators.generate",
                    "airflow_provider_kontext.operators.batch",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Kie.ai Flux Kontext",
                "python-modules": ["airflow_provider_kontext.sensors.task"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Kie.ai Flux Kontext",
                "python-modules": ["airflow_provider_kontext.triggers.task"],
            }
        ],
        "extra-links": ["airflow_provider_kontext.links.KontextImageLink"],
        "task-decorators": [
            {"name": "kontext", "class-name": "airflow_provider_kontext.decorators.generate.kontext_task"},
            {"name": "kontext_batch", "class-name": "airflow_provider_kontext.decorators.batch.kontext_batch_task"},
        ],
        "plugins": [
            {"name": "kontext_images", "plugin-class": "airflow_provider_kontext._ui.plugin.KontextImagesPlugin"}
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_kontext.hooks.kontext.KontextHook",
                "connection-type": "kontext",
                "hook-name": "Kie.ai Flux Kontext",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"password": "API Key", "host": "Base URL"},
                    "placeholders": {
                        "host": "https://api.kie.ai",
                        "extra": (
                            '{"connect_timeout": 10, "read_timeout": 30, '
                            '"upload_base_url": "https://kieai.redpandaai.co"}'
                        ),
                    },
                },
                # Airflow 3.2+: typed, labelled inputs for the extras (3.0/3.1 show the JSON box above).
                "conn-fields": CONN_FIELDS,
            }
        ],
    }

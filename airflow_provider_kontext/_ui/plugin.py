"""The Airflow plugin: the images app on the api-server and its views on task instances and DAG runs.

Registered twice over, as Airflow looks for provider plugins: the ``airflow.plugins`` entry point
(read by every Airflow process) and ``plugins`` in ``get_provider_info()`` (read when providers
are discovered eagerly).

Airflow loads plugins in the scheduler, the DAG processor and the workers too, where the app is
never served; so importing this module builds nothing. The FastAPI app is created on the first
request that reaches it (:class:`LazyApp`), which only happens inside the api-server.

Below Airflow 3.1 the plugin registers nothing: external views (and the human-in-the-loop
operators the review builds on) arrived in 3.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_kontext._compat import AIRFLOW_HAS_EXTERNAL_VIEWS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]

#: Where the api-server mounts the app.
URL_PREFIX: Final = "/kontext"
#: ``url_route`` of the task-instance view: the UI shows it as a tab at ``.../plugin/<route>``.
TASK_INSTANCE_ROUTE: Final = "kontext-images"
#: ``url_route`` of the DAG-run view.
DAG_RUN_ROUTE: Final = "kontext-run-images"


class LazyApp:
    """An ASGI app that builds the real one on its first request, so loading the plugin stays cheap."""

    def __init__(self) -> None:
        self._app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            from airflow_provider_kontext._ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "airflow_provider_kontext._ui.app:create_app (built on first request)"


def _views(supported: bool = AIRFLOW_HAS_EXTERNAL_VIEWS) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not supported:
        return [], []
    apps = [{"name": "Kontext images", "app": LazyApp(), "url_prefix": URL_PREFIX}]
    views = [
        {
            "name": "Kontext images",
            "href": f"{URL_PREFIX}/ti?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}&map_index={{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": TASK_INSTANCE_ROUTE,
        },
        {
            "name": "Kontext images",
            "href": f"{URL_PREFIX}/run?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "destination": "dag_run",
            "url_route": DAG_RUN_ROUTE,
        },
    ]
    return apps, views


_APPS, _EXTERNAL_VIEWS = _views()


class KontextImagesPlugin(AirflowPlugin):
    """The "Kontext images" views (task instance and DAG run) and the app that serves them."""

    name = "kontext_images"
    fastapi_apps = _APPS
    external_views = _EXTERNAL_VIEWS


__all__ = ["DAG_RUN_ROUTE", "TASK_INSTANCE_ROUTE", "URL_PREFIX", "KontextImagesPlugin", "LazyApp"]

"""The FastAPI app the api-server mounts at ``/kontext``: two HTML views and the stored images.

* ``GET /kontext/ti?dag_id&run_id&task_id&map_index``: one task instance (a mapped task without
  a map index: every map index);
* ``GET /kontext/run?dag_id&run_id``: every Kontext task instance of the run;
* ``GET /kontext/image?dag_id&run_id&task_id&map_index&index``: the stored copy of one image of
  that task instance: ``index`` is ``<item>`` (its only or first image) or ``<item>.<image>``
  (one of a Market task's several). Nothing else can be named: no path, no URL, no kie id.

Every route asks Airflow's auth manager whether the caller may read this DAG's task instances
and XComs (the same checks as the REST API's XCom endpoints), with Airflow's own user
resolution: the UI's ``_token`` cookie or an ``Authorization: Bearer`` header. No credentials:
401; credentials that may not read the DAG: 403. A refused or unknown image is a 404 that says
nothing about why, so the app cannot be used to probe for files.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Final

from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import HTMLResponse, StreamingResponse

from airflow_provider_kontext._ui.files import open_stored_image
from airflow_provider_kontext._ui.items import find_picture
from airflow_provider_kontext._ui.render import PAGE_CSP, render_page
from airflow_provider_kontext._ui.store import load_task_images
from airflow_provider_kontext.exceptions import KontextValidationError

if TYPE_CHECKING:
    from airflow_provider_kontext._ui.store import TaskImages

#: Headers on every answer: no sniffing, no caching by shared proxies, not framed elsewhere.
_COMMON_HEADERS: Final = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=60"}
_NOT_FOUND: Final = "No such image in this task instance's results."
_MAP_INDEX: Final = re.compile(r"-?[0-9]{1,6}")


def _map_index(raw: str | None) -> int | None:
    """A map index, or ``None`` (all of them) for -1, an unfilled ``{MAP_INDEX}`` or nothing."""
    if raw is None or not _MAP_INDEX.fullmatch(raw):
        return None
    value = int(raw)
    return value if value >= 0 else None


def _exact_map_index(raw: str | None) -> int:
    """The one map index an image link names (-1: not mapped); anything else finds nothing."""
    text = "-1" if raw is None else raw
    if not _MAP_INDEX.fullmatch(text) or int(text) < -1:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND)
    return int(text)


def _load(dag_id: str, run_id: str, task_id: str | None, map_index: int | None) -> list[TaskImages]:
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:
        return load_task_images(session, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)


def _html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers={**_COMMON_HEADERS, "Content-Security-Policy": PAGE_CSP})


def create_app() -> FastAPI:
    """Build the app; called by the plugin on the first request, inside the api-server."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    app = FastAPI(
        title="Kontext images",
        description="Images produced by Kie.ai Flux Kontext and Market tasks (airflow-provider-kontext).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # requires_access_dag reads dag_id from the query string; both checks share one user lookup.
    read_access = [
        Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE)),
        Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.XCOM)),
    ]

    @app.get("/ti", response_class=HTMLResponse, dependencies=read_access)
    def task_instance_view(
        dag_id: Annotated[str, Query(min_length=1)],
        run_id: Annotated[str, Query(min_length=1)],
        task_id: Annotated[str, Query(min_length=1)],
        map_index: str | None = None,
    ) -> HTMLResponse:
        """The images of one task instance; a mapped task without a map index shows all of them."""
        groups = _load(dag_id, run_id, task_id, _map_index(map_index))
        return _html(render_page(dag_id=dag_id, run_id=run_id, task_id=task_id, groups=groups))

    @app.get("/run", response_class=HTMLResponse, dependencies=read_access)
    def run_view(
        dag_id: Annotated[str, Query(min_length=1)], run_id: Annotated[str, Query(min_length=1)]
    ) -> HTMLResponse:
        """Every Kontext task instance of the run, in the order they started."""
        groups = _load(dag_id, run_id, None, None)
        return _html(render_page(dag_id=dag_id, run_id=run_id, task_id=None, groups=groups))

    @app.get("/image", dependencies=read_access)
    def image(
        dag_id: Annotated[str, Query(min_length=1)],
        run_id: Annotated[str, Query(min_length=1)],
        task_id: Annotated[str, Query(min_length=1)],
        index: Annotated[str, Query()],
        map_index: str | None = None,
    ) -> StreamingResponse:
        """The stored copy of image ``index`` (``<item>`` or ``<item>.<image>``) of this task instance, only that."""
        groups = _load(dag_id, run_id, task_id, _exact_map_index(map_index))
        if len(groups) != 1:
            raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND)
        try:
            picture = find_picture(groups[0].items, index)
            if picture.stored_path is None:
                raise KontextValidationError("this image has no stored copy.", field="index")
            stream = open_stored_image(picture.stored_path)
        except KontextValidationError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND) from None
        headers = {
            **_COMMON_HEADERS,
            "Content-Length": str(stream.size),
            "Content-Security-Policy": "default-src 'none'",
            "Content-Disposition": "inline",
        }
        return StreamingResponse(stream.chunks, media_type=stream.content_type, headers=headers)

    return app


__all__ = ["create_app"]

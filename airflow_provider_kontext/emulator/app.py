"""The FastAPI application that speaks kie's Flux Kontext and Market jobs APIs, quirks included.

Endpoints answer the way kie does, not the way a tidy REST API would: auth failures are HTTP 200
with body code 401, unknown or fresh tasks are HTTP 200 with ``recordInfo is null``, only the
create rate limit is a real HTTP 429. Handlers build JSON bytes directly (no response models) so
that record-info stays cheap under thousands of concurrent pollers. Both create endpoints run one
pipeline (auth, the account's one create window, body, validation, credits), differing only in
how they validate and what task they make.
"""

from __future__ import annotations

import hmac
import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from starlette.datastructures import UploadFile

from airflow_provider_kontext.emulator import routes
from airflow_provider_kontext.emulator.faults import serve_with_faults
from airflow_provider_kontext.emulator.files import FileService, own_file_key
from airflow_provider_kontext.emulator.market import validate_market
from airflow_provider_kontext.emulator.net import FetchError, Outbound
from airflow_provider_kontext.emulator.payloads import (
    credit_number,
    dumps,
    envelope,
    file_url,
    market_record_data,
    record_data,
)
from airflow_provider_kontext.emulator.state import Api, EmulatorState, Task
from airflow_provider_kontext.emulator.uploads import (
    UploadError,
    decode_base64_data,
    store_upload,
    upload_envelope,
)
from airflow_provider_kontext.emulator.validation import Rejection, is_http_url, validate_generate
from airflow_provider_kontext.emulator.worker import TaskWorker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from starlette.types import Receive, Scope, Send

    from airflow_provider_kontext.emulator.config import EmulatorConfig

__all__ = ["EmulatorApp", "create_app"]

_UNAUTHORIZED_MSG = "You do not have access permissions"


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(content=dumps(body), status_code=status, media_type="application/json", headers=headers)


class EmulatorApp(FastAPI):
    """FastAPI whose outermost layer counts requests and plays injected faults.

    Overriding ``__call__`` (rather than adding middleware) keeps the fault layer outside
    Starlette's error middleware, which is what lets a ``drop`` fault close the socket silently.
    """

    def __init__(self, emulator_state: EmulatorState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.emulator_state = emulator_state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Entry point for every ASGI connection."""
        await serve_with_faults(self.emulator_state, scope, receive, send, super().__call__)


async def _json_body(request: Request) -> Any:
    """The parsed JSON body, or None when it is not valid JSON."""
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def create_app(config: EmulatorConfig, state: EmulatorState | None = None) -> FastAPI:
    """Build the emulator app. A given ``state`` adopts ``config`` (as current and reset baseline)."""
    if state is None:
        state = EmulatorState(config)
    elif state.config is not config:
        state.replace_config(config)
    emulator: EmulatorState = state
    outbound = Outbound()
    files = FileService(emulator)
    worker = TaskWorker(emulator, files, outbound)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await worker.aclose()
        await outbound.close()

    app = EmulatorApp(
        emulator,
        title="kontext-emulator",
        description="Local kie.ai-compatible Flux Kontext and Market jobs API for tests and demos",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def base_url(request: Request) -> str:
        """Prefix for URLs in answers: the configured public URL, else this server's own."""
        return emulator.config.public_base_url or str(request.base_url).rstrip("/")

    def reply(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
        """An ``api.kie.ai`` envelope: HTTP 200 whatever the body code, unless ``mirror_http_status``."""
        code = body.get("code")
        status = 200
        if emulator.config.mirror_http_status and isinstance(code, int) and 400 <= code <= 599:
            status = code
        return _json(body, status=status, headers=headers)

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        ok = hmac.compare_digest(header.encode(), f"Bearer {emulator.config.api_key}".encode())
        if not ok:
            emulator.count_auth_failure()
        return ok

    async def create(request: Request, make: Callable[[dict[str, Any], str], Task | Rejection | None]) -> Response:
        """
        The create pipeline of both APIs: 401, then the account's one create window (429, the
        request dropped), then the body and ``make``'s validation (422/500), then credits (402).
        """
        if not authorized(request):
            return reply(envelope(401, _UNAUTHORIZED_MSG))
        if not emulator.try_rate_limited_create():
            retry_after = emulator.config.rate_limit_retry_after
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
            return _json(envelope(429, "Rate limit exceeded"), status=429, headers=headers)
        body = await _json_body(request)
        if not isinstance(body, dict):
            emulator.count_validation_rejection()
            return reply(envelope(422, "Request body must be a JSON object"))
        task = make(body, str(request.base_url).rstrip("/"))
        if isinstance(task, Rejection):
            emulator.count_validation_rejection()
            return reply(envelope(task.code, task.msg))
        if task is None:
            return reply(envelope(402, "Credits insufficient"))
        worker.start(task)
        return reply(envelope(200, "success", {"taskId": task.task_id}))

    def polled_task(request: Request, api: Api) -> Task | Response:
        """The task a record-info request asks for, or kie's answer when there is none to show yet.

        Each API sees only its own tasks: a Kontext id on jobs/recordInfo (or the reverse) is as
        unknown as any other id, which is what catches a client polling the wrong endpoint.
        """
        if not authorized(request):
            return reply(envelope(401, _UNAUTHORIZED_MSG))
        task_id = request.query_params.get("taskId")
        if not task_id:
            return reply(envelope(422, "taskId is required"))
        task = emulator.get_task(task_id)
        if task is None or task.api != api or not emulator.record_visible(task):
            return reply(envelope(422, "recordInfo is null"))
        return task

    # --------------------------------------------------------------------------- Flux Kontext API

    def make_kontext(body: dict[str, Any], own_base: str) -> Task | Rejection | None:
        params = validate_generate(body)
        if isinstance(params, Rejection):
            return params
        return emulator.create_task(params, base_url=own_base)

    @app.post(routes.GENERATE)
    async def generate(request: Request) -> Response:
        return await create(request, make_kontext)

    @app.get(routes.RECORD_INFO)
    async def record_info(request: Request) -> Response:
        task = polled_task(request, "kontext")
        if isinstance(task, Response):
            return task
        data = record_data(task, emulator.now(), base_url(request), emulator.config.time_format)
        return reply(envelope(200, "success", data))

    # --------------------------------------------------------------------------- Market jobs API

    def make_market(body: dict[str, Any], own_base: str) -> Task | Rejection | None:
        order = validate_market(body, refusal_code=emulator.config.market_validation_code)
        if isinstance(order, Rejection):
            return order
        return emulator.create_market_task(order, base_url=own_base)

    @app.post(routes.JOBS_CREATE)
    async def jobs_create(request: Request) -> Response:
        return await create(request, make_market)

    @app.get(routes.JOBS_RECORD_INFO)
    async def jobs_record_info(request: Request) -> Response:
        task = polled_task(request, "market")
        if isinstance(task, Response):
            return task
        return reply(envelope(200, "success", market_record_data(task, emulator.now(), base_url(request))))

    # --------------------------------------------------------------------------- Common API

    @app.get(routes.CREDIT)
    async def credit(request: Request) -> Response:
        if not authorized(request):
            return reply(envelope(401, _UNAUTHORIZED_MSG))
        return reply(envelope(200, "success", credit_number(emulator.credits)))

    @app.post(routes.DOWNLOAD_URL)
    async def download_url(request: Request) -> Response:
        if not authorized(request):
            return reply(envelope(401, _UNAUTHORIZED_MSG))
        body = await _json_body(request)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            return reply(envelope(422, "url is required"))
        base = base_url(request)
        key = own_file_key(url, {base, str(request.base_url).rstrip("/")})
        if key is None or key.startswith("dl/") or emulator.resolve_file(key) is None:
            return reply(envelope(422, "Only files generated by kie can be downloaded with this API"))
        link = emulator.create_download_link(key, key.rsplit("/", 1)[-1])
        return reply(envelope(200, "success", file_url(base, link)))

    # --------------------------------------------------------------------------- File Upload API

    def upload_answer(request: Request, data: bytes, form: Mapping[str, Any], **hints: Any) -> Response:
        try:
            stored = store_upload(
                emulator, base_url(request), data, form.get("uploadPath"), form.get("fileName"), **hints
            )
        except UploadError as exc:
            return _json(upload_envelope(exc.code, exc.msg))
        return _json(upload_envelope(200, "File uploaded successfully", stored))

    @app.post(routes.UPLOAD_STREAM)
    async def upload_stream(request: Request) -> Response:
        if not authorized(request):
            return _json(upload_envelope(401, _UNAUTHORIZED_MSG))
        try:
            form = await request.form()
        except Exception:  # malformed multipart: kie answers "bad parameters"
            return _json(upload_envelope(400, "Request must be multipart/form-data with a file field"))
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                return _json(upload_envelope(400, "file is required"))
            data = await upload.read()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            return upload_answer(request, data, fields, name_hint=upload.filename)
        finally:
            await form.close()

    @app.post(routes.UPLOAD_URL)
    async def upload_url(request: Request) -> Response:
        if not authorized(request):
            return _json(upload_envelope(401, _UNAUTHORIZED_MSG))
        body = await _json_body(request)
        if not isinstance(body, dict) or not is_http_url(body.get("fileUrl")):
            return _json(upload_envelope(400, "fileUrl is required and must be an http(s) URL"))
        url = str(body["fileUrl"])
        key = own_file_key(url, {base_url(request), str(request.base_url).rstrip("/")})
        if key is not None:
            found = await files.read(key)
            if found is None:
                return _json(upload_envelope(500, f"File download failed: {url} not found"))
            data = found[0]
        else:
            try:
                data = await outbound.fetch(url, timeout=emulator.config.url_upload_timeout_seconds)
            except FetchError as exc:
                return _json(upload_envelope(500, f"File download failed: {exc}"))
        name_hint = url.rsplit("/", 1)[-1].split("?", 1)[0] or None
        return upload_answer(request, data, body, name_hint=name_hint)

    @app.post(routes.UPLOAD_BASE64)
    async def upload_base64(request: Request) -> Response:
        if not authorized(request):
            return _json(upload_envelope(401, _UNAUTHORIZED_MSG))
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _json(upload_envelope(400, "Request body must be a JSON object"))
        try:
            data, declared = decode_base64_data(body.get("base64Data"))
        except UploadError as exc:
            return _json(upload_envelope(exc.code, exc.msg))
        return upload_answer(request, data, body, declared_type=declared)

    # --------------------------------------------------------------------------- files (image host)

    @app.api_route(routes.FILES_PREFIX + "{key:path}", methods=["GET", "HEAD"])
    async def get_file(key: str) -> Response:
        found = await files.read(key)
        if found is None:
            return _json({"code": 404, "msg": "File not found or expired"}, status=404)
        data, content_type = found
        return Response(content=data, media_type=content_type, headers={"Cache-Control": "no-store"})

    # --------------------------------------------------------------------------- control API

    @app.get("/_emulator/health")
    async def health() -> Response:
        return _json({"ok": True})

    @app.get("/_emulator/stats")
    async def stats() -> Response:
        return _json(emulator.stats())

    @app.get("/_emulator/config")
    async def get_config() -> Response:
        return _json(emulator.config.as_dict())

    @app.post("/_emulator/config")
    async def set_config(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _json({"error": "body must be a JSON object of config values"}, status=400)
        try:
            config = emulator.update_config(**body)
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, status=400)
        return _json(config.as_dict())

    @app.post("/_emulator/rate-limit/other-client")
    async def other_client(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("creates"), int):
            return _json({"error": 'body must be {"creates": N, "seconds": S or null}'}, status=400)
        seconds = body.get("seconds")
        try:
            emulator.share_account(body["creates"], None if seconds is None else float(seconds))
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, status=400)
        return _json({"ok": True})

    @app.post("/_emulator/reset")
    async def reset(request: Request) -> Response:
        raw = await request.body()
        overrides: Any = json.loads(raw) if raw.strip() else {}
        if not isinstance(overrides, dict):
            return _json({"error": "body must be empty or a JSON object of config values"}, status=400)
        try:
            config = emulator.reset(**overrides)
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, status=400)
        await worker.aclose()
        return _json({"ok": True, "config": config.as_dict()})

    @app.get("/_emulator/faults")
    async def list_faults() -> Response:
        return _json(emulator.pending_faults())

    @app.delete("/_emulator/faults")
    async def clear_faults() -> Response:
        emulator.clear_faults()
        return _json({"ok": True})

    @app.post("/_emulator/faults")
    async def add_fault(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _json({"error": "body must be a JSON object"}, status=400)
        params = dict(body)
        endpoint = params.pop("endpoint", None)
        kind = params.pop("kind", None)
        count = params.pop("count", 1)
        try:
            fault = emulator.inject_fault(str(endpoint), str(kind), count, **params)
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, status=400)
        return _json({"ok": True, "fault": fault.as_dict()})

    @app.post("/_emulator/faults/random")
    async def add_random_faults(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _json({"error": "body must be a JSON object with rate and seed"}, status=400)
        try:
            rate: Any = body.get("rate")
            seed: Any = body.get("seed")
            plan = emulator.inject_random_faults(rate, seed, endpoints=body.get("endpoints"), kinds=body.get("kinds"))
        except (TypeError, ValueError, AttributeError) as exc:
            return _json({"error": str(exc)}, status=400)
        return _json({"ok": True, "random_faults": plan.as_dict()})

    @app.get("/_emulator/faults/applied")
    async def applied_faults() -> Response:
        return _json([entry.as_dict() for entry in emulator.applied_faults()])

    @app.get("/_emulator/tasks/{task_id}")
    async def task_details(task_id: str) -> Response:
        summary = emulator.task_summary(task_id)
        if summary is None:
            return _json({"error": "unknown task"}, status=404)
        return _json(summary)

    @app.get("/_emulator/callbacks")
    async def callbacks(request: Request) -> Response:
        return _json(emulator.callback_log(request.query_params.get("taskId")))

    return app

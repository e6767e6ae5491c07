"""``KontextGenerateOperator``: create a kie image task (Flux Kontext or any Market model) and wait for it.

The create request is sent on the worker, once; the wait happens in the triggerer (deferrable)
or on the worker (blocking), both decided by the same
:class:`~airflow_provider_kontext._protocol.polling.TaskWaiter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext._protocol.request import OPTIONAL_FIELDS
from airflow_provider_kontext._tasks.prepare import contains_unrendered, is_unrendered, validate_item
from airflow_provider_kontext.operators.base import KontextSubmitOperator
from airflow_provider_kontext.results import TASK_ID_KEY

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_kontext._protocol.polling import WaitResult
    from airflow_provider_kontext._protocol.request import CreateRequest

#: Stand-ins used to validate the static fields while a templated one is still unrendered.
_TEMPLATE_PLACEHOLDERS: Final[dict[str, Any]] = {
    "prompt": "templated prompt",
    "input_image": "https://templated.invalid/image",
    "callback_url": "https://templated.invalid/callback",
    "watermark": "templated",
}


class KontextGenerateOperator(KontextSubmitOperator):
    """
    Generate an image with Flux Kontext or any kie Market model, or edit one, and return its result.

    Flux Kontext takes ``prompt`` and the generate fields below. A Market model (FLUX.2, Nano
    Banana, Seedream, GPT Image, ... any model of the catalog) takes ``model`` and its ``input``
    (``model="flux-2/pro-text-to-image", input={"prompt": ..., "aspect_ratio": "1:1",
    "resolution": "1K"}``); ``prompt``, when given too, fills ``input["prompt"]``. The input is
    validated against the model catalog before anything is sent, and any of its image fields may
    name a local file or an ``ObjectStoragePath``, uploaded first. Such a task may return several
    images: the result's ``result_image_urls`` lists them, ``credits`` says what it cost.

    Returns a small dict (``kie_task_id``, ``status``, ``result_image_url``, ``origin_image_url``,
    ``prompt``, ``model``, ``aspect_ratio``, ``create_time``, ``complete_time``, ...), or just the
    kie task id with ``wait_for_completion=False``. The kie task id is pushed to XCom key
    ``kie_task_id`` as soon as the task is created, and the image URL to
    ``result_image_url``. kie keeps images 14 days: copy them somewhere durable.

    On Airflow 3.3+ the kie task id is kept in the task state store, so an Airflow retry
    re-attaches to a task still running or done instead of paying again; only a failed task is
    re-created. Older Airflow versions have no such store: there a retry creates a new task.

    :param prompt: What to generate, or the change to make when editing. Templated.
    :param input_image: http(s) URL of the image to edit; leave unset for text-to-image. Templated.
    :param aspect_ratio: ``21:9``, ``16:9``, ``4:3``, ``1:1``, ``3:4`` or ``9:16``. Templated.
    :param output_format: ``jpeg`` or ``png``.
    :param model: ``flux-kontext-pro`` or ``flux-kontext-max``. Templated.
    :param prompt_upsampling: Let kie expand the prompt.
    :param enable_translation: Let kie translate a non-English prompt.
    :param upload_cn: Use kie's servers in China.
    :param callback_url: URL kie POSTs the result to. Templated.
    :param watermark: Watermark identifier. Templated.
    :param safety_tolerance: Moderation level, 0 (strict) to 6 when generating, to 2 when editing.
    :param input: A Market model's ``input`` (its fields, see the catalog); makes this a Market
        task. Templated.
    :param allow_uncatalogued_model: Send a Market ``model`` the catalog does not know, with only
        the shape of ``input`` checked (a model newer than this provider). Off by default: an
        unknown model is an error naming the close matches.
    :param kontext_conn_id: The ``kontext`` Airflow connection.
    :param wait_for_completion: Wait for the image (default) or return the kie task id at once.
    :param deferrable: Wait in the triggerer, freeing the worker slot. Defaults to
        ``[operators] default_deferrable``.
    :param poll_interval: Seconds between status checks.
    :param timeout: Seconds for the create (waiting out kie's rate limit: ``KontextRateLimitError``)
        and the image (``KontextTimeoutError``), capped by ``execution_timeout``.
    :param min_credits: Read the balance first and fail before any spend when it is lower.
    :param output_path: Copy the image here when it is ready (kie deletes it after 14 days): an
        ``ObjectStoragePath`` or a URI (``file:///data/images``, ``s3://bucket/prefix``,
        ``s3://conn_id@bucket/prefix``). Templated. The stored URI is added to the result as
        ``stored_path``; declared outlets get an Asset event listing the files.
    :param output_file_name: ``str.format`` template for the file name under ``output_path``,
        over ``dag_id``, ``run_id``, ``task_id``, ``map_index``, ``kie_task_id``, ``ext``;
        default ``{dag_id}/{run_id}/{task_id}/{map_index}-{kie_task_id}.{ext}``. Templated.
    :param max_image_bytes: Refuse result files larger than this.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "input_image",
        "aspect_ratio",
        "model",
        "callback_url",
        "watermark",
        "input",
        "output_path",
        "output_file_name",
    )

    def __init__(
        self,
        *,
        prompt: str | None = None,
        input_image: str | None = None,
        aspect_ratio: str | None = None,
        output_format: str | None = None,
        model: str | None = None,
        prompt_upsampling: bool | None = None,
        enable_translation: bool | None = None,
        upload_cn: bool | None = None,
        callback_url: str | None = None,
        watermark: str | None = None,
        safety_tolerance: int | None = None,
        input: dict[str, Any] | None = None,
        allow_uncatalogued_model: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.input_image = input_image
        self.aspect_ratio = aspect_ratio
        self.output_format = output_format
        self.model = model
        self.prompt_upsampling = prompt_upsampling
        self.enable_translation = enable_translation
        self.upload_cn = upload_cn
        self.callback_url = callback_url
        self.watermark = watermark
        self.safety_tolerance = safety_tolerance
        self.input = input
        self.allow_uncatalogued_model = allow_uncatalogued_model
        static = self._fields_for_static_check()
        if static is not None:
            validate_item(static)

    # ------------------------------------------------------------------ request

    @property
    def task_api(self) -> ApiFamily:
        return ApiFamily.MARKET if self.input is not None else ApiFamily.KONTEXT

    def _fields(self) -> dict[str, Any]:
        if self.input is None:
            return {"prompt": self.prompt, **{name: getattr(self, name) for name in OPTIONAL_FIELDS}}
        kontext_only = [name for name in OPTIONAL_FIELDS if name not in ("model", "callback_url")]
        for name in kontext_only:
            if getattr(self, name) is not None:
                from airflow_provider_kontext.exceptions import KontextValidationError

                raise KontextValidationError(
                    f"{name} is a Flux Kontext field; with input (a Market model) put the model's own fields in input.",
                    field=name,
                )
        market_input = dict(self.input) if isinstance(self.input, dict) else self.input
        if isinstance(market_input, dict) and self.prompt is not None:
            market_input.setdefault("prompt", self.prompt)
        return {
            "model": self.model,
            "input": market_input,
            "callback_url": self.callback_url,
            "allow_uncatalogued_model": self.allow_uncatalogued_model,
        }

    def _fields_for_static_check(self) -> dict[str, Any] | None:
        """The fields with not-yet-rendered templates swapped for neutral stand-ins; ``None``: nothing to check yet."""
        if self.input is not None:
            # A Market input is checked as a whole once any part of it is rendered; a templated
            # model or input waits for rendering (Kontext-only fields still fail now).
            fields = self._fields()
            return None if contains_unrendered(fields) else fields
        fields = self._fields()
        for name in fields:
            if name in self.template_fields and is_unrendered(fields[name]):
                fields[name] = _TEMPLATE_PLACEHOLDERS.get(name)
        return fields

    def build_request(self) -> CreateRequest:
        """
        Validate the rendered fields; raises before anything is sent.

        An image to upload is stood in for by a placeholder here; the upload itself happens only
        when the task is really created.
        """
        return validate_item(self._fields())

    # ------------------------------------------------------------------ execution

    def execute(self, context: Context) -> Any:
        self.build_request()
        ti = context["ti"]
        outcome = self.submit_and_wait(
            context,
            [self._fields()],
            on_progress=lambda ids: ti.xcom_push(key=TASK_ID_KEY, value=ids[0]),
        )
        return outcome[0] if not self.wait_for_completion else outcome

    def trigger_end_mode(self) -> str | None:
        """End a successful deferred wait in the triggerer when the worker would only return the result."""
        from airflow_provider_kontext._tasks.task_defaults import end_mode

        return end_mode(self, KontextGenerateOperator, output_path=self.output_path, returns_list=False)

    def finish(self, context: Context, result: WaitResult, creates: Sequence[Mapping[str, Any]] | None = None) -> Any:
        return super().finish(context, result, creates)[0]

"""Turn rendered operator fields into sendable requests: validate everything first, upload last.

``input_image`` may be an http(s) URL or something to upload first (a local path, an
``ObjectStoragePath``). The order matters for money and for clarity: every field of every item
is validated before any HTTP request (an upload placeholder stands in for a not-yet-uploaded
image, so the edit-mode rules such as ``safety_tolerance <= 2`` still apply), and uploads
happen only for requests that are actually going to be created.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from airflow_provider_kontext._protocol.request import OPTIONAL_FIELDS, GenerateRequest
from airflow_provider_kontext.exceptions import KontextValidationError

if TYPE_CHECKING:
    from airflow_provider_kontext.hooks.kontext import KontextHook

#: Stands in for an image that will be uploaded, during validation only; never sent.
UPLOAD_PLACEHOLDER: Final = "https://upload.invalid/input-image"


def has_jinja(value: Any) -> bool:
    """A string that still holds Jinja markup: only template rendering can tell its value."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def is_unrendered(value: Any) -> bool:
    """A Jinja string or a lazy value (XComArg, ...) that only rendering will resolve."""
    if isinstance(value, str):
        return has_jinja(value)
    return value is not None and not isinstance(value, (bool, int, float))


def contains_unrendered(value: Any) -> bool:
    """:func:`is_unrendered` anywhere inside nested dicts and lists (a batch's ``requests``)."""
    if isinstance(value, dict):
        return any(contains_unrendered(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_unrendered(item) for item in value)
    return is_unrendered(value)


def needs_upload(value: Any) -> bool:
    """An ``input_image`` that is set and is not already an http(s) URL."""
    if value is None:
        return False
    return not (isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")))


def validate_item(fields: Mapping[str, Any], *, prefix: str | None = None) -> GenerateRequest:
    """
    Validate one item's fields (uploads stood in for); errors name ``prefix.field``.

    Returns the request as it would be sent, with the placeholder where an upload is pending.
    """
    if not isinstance(fields, Mapping):
        raise KontextValidationError(
            f"{prefix} must be a dict of generate fields, got {type(fields).__name__}.", field=prefix
        )
    candidate = dict(fields)
    if needs_upload(candidate.get("input_image")):
        source = candidate["input_image"]
        if isinstance(source, str) and (("://" in source and not _is_file_uri(source)) or not source.strip()):
            raise _named(
                KontextValidationError(
                    f"input_image must be an http(s) URL, a local file path or a file:// URI, got {source!r}; "
                    "pass other storage (s3://, gs://, ...) as an ObjectStoragePath.",
                    field="input_image",
                ),
                prefix,
            )
        if not isinstance(source, (str, os.PathLike)) and not hasattr(source, "open"):
            raise _named(
                KontextValidationError(
                    f"input_image must be an http(s) URL, a local path or an ObjectStoragePath, "
                    f"got {type(source).__name__}.",
                    field="input_image",
                ),
                prefix,
            )
        candidate["input_image"] = UPLOAD_PLACEHOLDER
    if "prompt" not in candidate:
        raise _named(KontextValidationError("prompt is required.", field="prompt"), prefix)
    try:
        return GenerateRequest.from_fields(**candidate)
    except KontextValidationError as err:
        raise _named(err, prefix) from None


def returned_fields(value: Any, *, decorator: str, prefix: str | None = None) -> dict[str, Any]:
    """
    A decorated function's return value as generate fields: a prompt string, or a dict of fields.

    Only the shape is checked here; :func:`validate_item` then checks every field, so a bad
    value fails with the same error, naming the same field, as the operator's argument would.
    """
    if isinstance(value, str):
        return {"prompt": value}
    if isinstance(value, Mapping):
        return dict(value)
    field = prefix or "prompt"
    raise KontextValidationError(
        f"{decorator}: {field} must be the prompt (a string) or a dict of generate fields "
        f"(prompt, {', '.join(OPTIONAL_FIELDS)}), got {type(value).__name__}.",
        field=field,
    )


def validate_items(items: Any) -> list[GenerateRequest]:
    """Validate a batch's ``requests`` list; errors name ``requests[i].field``."""
    if not isinstance(items, list) or not items:
        raise KontextValidationError("requests must be a non-empty list of dicts.", field="requests")
    return [validate_item(item, prefix=f"requests[{index}]") for index, item in enumerate(items)]


def fingerprint(fields: Mapping[str, Any]) -> str:
    """
    A digest of what the caller asked for, before any upload.

    Taken over the caller's values (a local path stays a path), not over the uploaded URL,
    which is new on every upload: a retry must recognise the same image request.
    """
    canonical = {key: value for key, value in fields.items() if value is not None}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


def materialize(hook: KontextHook, fields: Mapping[str, Any]) -> GenerateRequest:
    """The request to send: upload ``input_image`` first when it is not a URL."""
    values = dict(fields)
    source = values.get("input_image")
    if needs_upload(source):
        if isinstance(source, str) and _is_file_uri(source):
            source = urlsplit(source).path  # a file:// URI, e.g. a stored_path from an earlier task
        values["input_image"] = hook.resolve_input_image(source)
    return GenerateRequest.from_fields(**values)


def _is_file_uri(value: str) -> bool:
    return value.strip().lower().startswith("file://")


def _named(error: KontextValidationError, prefix: str | None) -> KontextValidationError:
    if prefix is None:
        return error
    field = f"{prefix}.{error.field}" if error.field else prefix
    return KontextValidationError(f"{field}: {error}", field=field)


def check_output_path(output_path: Any, file_name: Any = None) -> None:
    """
    Refuse an unusable ``output_path`` or file-name template before anything is sent.

    A template that escapes ``output_path`` must fail now, not after kie has been paid for the
    image. Values with unrendered Jinja wait for rendering.
    """
    if output_path is None or has_jinja(output_path):
        return
    from airflow_provider_kontext._tasks.storage import image_file_name, resolve_output_path

    resolve_output_path(output_path)
    if not has_jinja(file_name):
        for index in (None, 0):  # the single-image and the batch form of the default
            image_file_name(
                file_name,
                dag_id="dag",
                run_id="run",
                task_id="task",
                map_index=-1,
                kie_task_id="task0",
                ext="png",
                index=index,
            )

"""Turn rendered operator fields into sendable requests: validate everything first, upload last.

An item is a Flux Kontext request (``prompt`` and the generate fields) or a Market one (``model``
and its ``input``, told apart by the ``input`` key). ``input_image``, and every image field of a
Market model's ``input``, may be an http(s) URL or something to upload first (a local path, an
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

from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext._protocol.request import MODELS as KONTEXT_MODELS
from airflow_provider_kontext._protocol.request import OPTIONAL_FIELDS, CreateRequest, GenerateRequest, MarketRequest
from airflow_provider_kontext.exceptions import KontextValidationError

if TYPE_CHECKING:
    from collections.abc import Callable

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


#: The keys of a Market item besides ``input``; everything else of a Market task goes in ``input``.
MARKET_ITEM_KEYS: Final = ("model", "input", "callback_url", "allow_uncatalogued_model")


def item_api(fields: Mapping[str, Any]) -> ApiFamily:
    """The API family an item is for: Market when it has an ``input``, Flux Kontext otherwise."""
    return ApiFamily.MARKET if "input" in fields else ApiFamily.KONTEXT


def validate_item(fields: Mapping[str, Any], *, prefix: str | None = None) -> CreateRequest:
    """
    Validate one item's fields (uploads stood in for); errors name ``prefix.field``.

    Returns the request as it would be sent, with the placeholder where an upload is pending.
    """
    if not isinstance(fields, Mapping):
        raise KontextValidationError(
            f"{prefix} must be a dict of generate fields, got {type(fields).__name__}.", field=prefix
        )
    if item_api(fields) is ApiFamily.MARKET:
        return _validate_market_item(fields, prefix)
    _check_not_market_model(fields.get("model"), prefix)
    candidate = dict(fields)
    if needs_upload(candidate.get("input_image")):
        _check_upload_source(candidate["input_image"], "input_image", prefix)
        candidate["input_image"] = UPLOAD_PLACEHOLDER
    if "prompt" not in candidate:
        raise _named(KontextValidationError("prompt is required.", field="prompt"), prefix)
    try:
        return GenerateRequest.from_fields(**candidate)
    except KontextValidationError as err:
        raise _named(err, prefix) from None


def _validate_market_item(fields: Mapping[str, Any], prefix: str | None) -> MarketRequest:
    unknown = sorted(name for name, value in fields.items() if value is not None and name not in MARKET_ITEM_KEYS)
    if unknown:
        raise _named(
            KontextValidationError(
                f"{unknown[0]} is not a field of a Market request ({', '.join(MARKET_ITEM_KEYS)}): a Market "
                f"model's own fields go in input.",
                field=unknown[0],
            ),
            prefix,
        )
    if not fields.get("model"):
        raise _named(KontextValidationError("model is required with input.", field="model"), prefix)
    if fields.get("input") is None:
        # Dropped below with the other unset keys, it would reach MarketRequest as a missing argument.
        raise _named(
            KontextValidationError(
                "input is None; a Market request needs the model's fields as a dict.", field="input"
            ),
            prefix,
        )
    values = {key: value for key, value in fields.items() if value is not None}
    source = values.get("input")
    if isinstance(source, Mapping):
        values["input"] = _map_uploads(values["model"], source, prefix, lambda value, field, label: UPLOAD_PLACEHOLDER)
    try:
        return MarketRequest(**values)
    except KontextValidationError as err:
        raise _named(err, prefix) from None


def _map_uploads(
    model: Any, input: Mapping[str, Any], prefix: str | None, upload: Callable[[Any, str, str], str]
) -> dict[str, Any]:
    """
    ``input`` with every value to upload in the model's image fields replaced by ``upload(value, field, label)``.

    ``field`` is the input field (``input.image_urls``), the name the catalog's own checks of it
    give too; ``label`` adds the item (``input.image_urls[1]``) for the message.
    """
    from airflow_provider_kontext._protocol.catalog import catalog_models, image_url_fields

    if not isinstance(model, str) or model not in catalog_models():
        return dict(input)  # an uncatalogued model's image fields are unknown: URLs only
    result = dict(input)
    for name in image_url_fields(model):
        value = result.get(name)
        field = f"input.{name}"
        if isinstance(value, (list, tuple)):
            items = list(value)
            for index, item in enumerate(items):
                if needs_upload(item):
                    _check_upload_source(item, field, prefix, label=f"{field}[{index}]")
                    items[index] = upload(item, field, f"{field}[{index}]")
            result[name] = items
        elif needs_upload(value):
            _check_upload_source(value, field, prefix)
            result[name] = upload(value, field, field)
    return result


def _check_upload_source(source: Any, field: str, prefix: str | None, *, label: str | None = None) -> None:
    """An image to upload must be a local path, a ``file://`` URI or an ``ObjectStoragePath``."""
    label = label or field
    if isinstance(source, str) and (("://" in source and not _is_file_uri(source)) or not source.strip()):
        raise _named(
            KontextValidationError(
                f"{label} must be an http(s) URL, a local file path or a file:// URI, got {source!r}; "
                "pass other storage (s3://, gs://, ...) as an ObjectStoragePath.",
                field=field,
            ),
            prefix,
        )
    if not isinstance(source, (str, os.PathLike)) and not hasattr(source, "open"):
        raise _named(
            KontextValidationError(
                f"{label} must be an http(s) URL, a local path or an ObjectStoragePath, got {type(source).__name__}.",
                field=field,
            ),
            prefix,
        )


def _check_not_market_model(model: Any, prefix: str | None) -> None:
    """
    Refuse a Market model in a Flux Kontext request: its ``input`` is what is missing, not its prompt.

    An item is a Market one only when it has an ``input``; one that renders to ``None`` (or was
    forgotten) would otherwise fail on ``prompt`` or on the Kontext model list, neither of which
    is what the caller got wrong.
    """
    if not isinstance(model, str) or model in KONTEXT_MODELS:
        return  # the Kontext check names a bad value; the catalog is only loaded for a likely Market slug
    from airflow_provider_kontext._protocol.catalog import catalog_models

    if model in catalog_models():
        raise _named(
            KontextValidationError(
                f"{model} is a Market model: pass its fields as input (a dict, e.g. input={{'prompt': ...}}); "
                f"without input the request is a Flux Kontext one ({', '.join(KONTEXT_MODELS)}).",
                field="input",
            ),
            prefix,
        )


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


def validate_items(items: Any) -> list[CreateRequest]:
    """Validate a batch's ``requests`` list (one API family for all); errors name ``requests[i].field``."""
    if not isinstance(items, list) or not items:
        raise KontextValidationError("requests must be a non-empty list of dicts.", field="requests")
    requests = [validate_item(item, prefix=f"requests[{index}]") for index, item in enumerate(items)]
    families = [item_api(item) for item in items]
    if len(set(families)) > 1:
        index = families.index(families[-1] if families[0] is ApiFamily.KONTEXT else ApiFamily.KONTEXT)
        raise KontextValidationError(
            f"requests[{index}]: one batch waits on one API family, and requests[0] is a "
            f"{families[0].value} request while this one is not; split them into two batches (they "
            "share the account's create limit either way).",
            field=f"requests[{index}]",
        )
    return requests


def fingerprint(fields: Mapping[str, Any]) -> str:
    """
    A digest of what the caller asked for, before any upload.

    Taken over the caller's values (a local path stays a path), not over the uploaded URL,
    which is new on every upload: a retry must recognise the same image request.
    """
    canonical = {key: value for key, value in fields.items() if value is not None}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


def materialize(hook: KontextHook, fields: Mapping[str, Any], *, prefix: str | None = None) -> CreateRequest:
    """
    The request to send: upload ``input_image`` (or a Market input's local images) first.

    A local file is only looked for here, on the worker (the DAG processor may not have it), so
    its error names the item ``prefix`` (``requests[1]``) as :func:`validate_item`'s do.
    """
    if item_api(fields) is ApiFamily.MARKET:
        values = {key: value for key, value in fields.items() if value is not None}
        values["input"] = _map_uploads(
            values["model"],
            values["input"],
            prefix,
            lambda source, field, label: _upload(hook, source, field, prefix, label=label),
        )
        return MarketRequest(**values)
    values = dict(fields)
    source = values.get("input_image")
    if needs_upload(source):
        values["input_image"] = _upload(hook, source, "input_image", prefix)
    return GenerateRequest.from_fields(**values)


def _upload(hook: KontextHook, source: Any, field: str, prefix: str | None, *, label: str | None = None) -> str:
    """Upload one image; an error names ``field`` (in item ``prefix``) as validation does, its message the ``label``."""
    if isinstance(source, str) and _is_file_uri(source):
        source = urlsplit(source).path  # a file:// URI, e.g. a stored_path from an earlier task
    label = label or field
    try:
        uploaded = hook.resolve_input_image(source, field=label)
    except KontextValidationError as err:
        if err.field == label:
            err.field = field
        if prefix is None:
            raise
        raise _named(err, prefix) from None
    assert uploaded is not None  # only set values are uploaded
    return uploaded


def _is_file_uri(value: str) -> bool:
    return value.strip().lower().startswith("file://")


def _named(error: KontextValidationError, prefix: str | None) -> KontextValidationError:
    """
    ``error`` about item ``prefix`` (``requests[2]``): its field and message name the item.

    A copy of the same class with the same attributes, so a batch raises what a single item
    would: a caller catching :class:`~airflow_provider_kontext.exceptions.KontextUnknownModelError`
    (and reading its ``suggestions``) catches it in a batch too.
    """
    if prefix is None:
        return error
    field = f"{prefix}.{error.field}" if error.field else prefix
    named = type(error).__new__(type(error))
    named.__dict__.update(vars(error))
    named.args = (f"{field}: {error}", *error.args[1:])
    named.field = field
    return named


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

"""Typed errors for every way a Kie.ai call or task can go wrong, on Flux Kontext and on the Market API alike.

Each class says *what happened* so a DAG author can catch exactly what they care about
(``except KontextContentPolicyError``) and on-call can read the cause from the class name.
Every message carries the kie task id when there is one and kie's own message when kie sent
one. No message, ``repr`` or attribute ever carries the API key or request headers.

Whether an error may be retried is decided in one place,
:mod:`airflow_provider_kontext._protocol.retry`, not here: the same error can be safe to
retry on a status read and unsafe on a create.
"""

from __future__ import annotations

from airflow_provider_kontext._compat import AIRFLOW_VERSION, AirflowException


class KontextError(AirflowException):
    """
    Base class of every error this provider raises.

    :param message: What went wrong, in words an operator can act on.
    :param code: kie's body ``code`` (or the HTTP status when the body had none).
    :param http_status: The HTTP status of the answer, when there was one.
    :param kie_task_id: The kie task the error concerns, when known.
    :param kie_message: kie's own ``msg``/``errorMessage`` text, when it sent one.
    :param endpoint: The API endpoint name (``generate``, ``record-info``, ...), when known.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        kie_task_id: str | None = None,
        kie_message: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.code = code
        self.http_status = http_status
        self.kie_task_id = kie_task_id
        self.kie_message = kie_message
        self.endpoint = endpoint
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class KontextValidationError(KontextError, ValueError):
    """
    A request field is invalid: raised locally before anything is sent, or for kie's code 422.

    :param field: The offending field's Python (snake_case) name, when known.
    """

    def __init__(self, message: str, *, field: str | None = None, **kwargs: object) -> None:
        self.field = field
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class KontextUnknownModelError(KontextValidationError):
    """
    The Market ``model`` is not in the provider's catalog, so its ``input`` cannot be checked.

    Either a typo (``suggestions`` holds close catalog slugs) or a model kie has that the catalog
    does not describe (``uncatalogued_reason`` says why). The ``allow_uncatalogued_model`` opt-out
    sends it with only its shape checked; catching this class is how a caller tells the two
    cases from a bad field.

    :param model: The slug as given.
    :param suggestions: Close catalog slugs, best first.
    :param uncatalogued_reason: Why a model kie is known to have is not catalogued, else None.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        suggestions: tuple[str, ...] = (),
        uncatalogued_reason: str | None = None,
        **kwargs: object,
    ) -> None:
        self.model = model
        self.suggestions = suggestions
        self.uncatalogued_reason = uncatalogued_reason
        super().__init__(message, field="model", **kwargs)


class KontextConfigurationError(KontextError):
    """The Airflow connection is unusable (no API key, a malformed base URL or extra)."""


class KontextAuthError(KontextError):
    """kie refused the API key (code 401), often inside an HTTP 200 answer."""


class KontextInsufficientCreditsError(KontextError):
    """The account has too few credits for the request (code 402), or fewer than ``min_credits``."""


class KontextKeyLimitError(KontextError):
    """
    The API key's own usage limit is reached (code 433): a cap set on the key in kie's console.

    Not a rate limit: those caps count usage per hour, per day or in total, so waiting a rate
    window and sending again meets the same refusal. Raise the key's limit (or use another key);
    the account's credits are not the problem.
    """


class KontextCostLimitError(KontextError):
    """
    A task's requests would cost more than its ``max_credits`` at the catalog's prices: nothing was sent.

    :param max_credits: The task's ceiling.
    :param estimated_credits: What the catalog says the requests cost, when every price is known.
    """

    def __init__(
        self, message: str, *, max_credits: float, estimated_credits: float | None = None, **kwargs: object
    ) -> None:
        self.max_credits = max_credits
        self.estimated_credits = estimated_credits
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class KontextNotFoundError(KontextError):
    """The endpoint or resource does not exist (code 404): usually a wrong base URL."""


class KontextTaskNotFoundError(KontextError):
    """kie still answers ``recordInfo is null`` for a task after the grace period."""


class KontextRateLimitError(KontextError):
    """
    kie's rate limiter dropped the request (code 429); it was not queued.

    Raised by a create only once the task's deadline left no time to send it again; then
    ``waited_seconds`` says how long the task waited and the message how many of its images
    were created.

    :param retry_after: Seconds the server asked us to wait, when it said.
    :param waited_seconds: Seconds spent waiting out the limit before giving up, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        waited_seconds: float | None = None,
        **kwargs: object,
    ) -> None:
        self.retry_after = retry_after
        self.waited_seconds = waited_seconds
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class KontextServiceUnavailableError(KontextError):
    """
    kie is in maintenance (code 455); the request was not processed.

    :param retry_after: Seconds the server asked us to wait, when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class KontextServerError(KontextError):
    """kie or a gateway in front of it failed (code 500/408 or HTTP 5xx)."""


class KontextFeatureDisabledError(KontextError):
    """The feature is disabled for this account (code 505)."""


class KontextResponseError(KontextError):
    """The answer could not be understood: not JSON, an HTML error page, empty, or missing fields."""


class KontextDownloadError(KontextError):
    """A result file cannot be fetched as an image: refused, not an image, or over the size cap. Not retried."""


class KontextTransportError(KontextError):
    """
    The HTTP exchange itself failed (connection refused, reset, timed out).

    :param request_sent: False only when the request provably never reached the server
        (connection refused, DNS failure, connect timeout). That is what makes a create safe
        to send again.
    """

    def __init__(self, message: str, *, request_sent: bool, **kwargs: object) -> None:
        self.request_sent = request_sent
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class KontextSubmissionOutcomeUnknownError(KontextError):
    """
    A create request may or may not have been accepted, so it is not sent again.

    Raised for a read timeout, a connection dropped after the request was sent, a 5xx or an
    unreadable answer to a create (Flux Kontext ``generate`` or Market ``createTask``). A task may
    have been created and billed: check the kie logs page (https://kie.ai/logs) before submitting again.
    """


class KontextTaskFailedError(KontextError):
    """
    A task reached a failed terminal state. Subclasses say why.

    :param status: The terminal :class:`~airflow_provider_kontext._protocol.record.TaskStatus` value.
    :param error_code: kie's ``errorCode`` (int, str or None as kie sent it).
    """

    def __init__(
        self,
        message: str,
        *,
        status: str | None = None,
        error_code: int | str | None = None,
        **kwargs: object,
    ) -> None:
        self.status = status
        self.error_code = error_code
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class KontextContentPolicyError(KontextTaskFailedError):
    """
    kie's moderation refused the prompt or image. Resubmitting will not help.

    Flux Kontext says so with errorCode 400; the Market documents no code for it, so there it is
    recognised by kie's wording alone.
    """


class KontextGenerationFailedError(KontextTaskFailedError):
    """The task was created but generation failed (successFlag 3 or state ``fail``; code 501/500)."""


class KontextTaskCreateFailedError(KontextTaskFailedError):
    """kie could not create the task upstream (successFlag 2)."""


class KontextMissingResultError(KontextTaskFailedError):
    """
    kie reported success but gave no result image URL (``resultImageUrl``, or ``resultUrls`` on the Market).

    Credits were probably charged; resubmitting pays again.
    """


class KontextTimeoutError(KontextError):
    """The task(s) did not finish before the wait's deadline. They may still be running on kie."""


class KontextTriggerEventError(KontextError):
    """A trigger event had an unexpected shape (for example from a provider version skew)."""


class KontextAirflowVersionError(KontextError):
    """
    The DAG uses something this Airflow does not have yet; raised where it is constructed (DAG parse time).

    The README's "Airflow versions" table says what each feature needs and what to do below it.

    :param what: The class the DAG tried to build (``KontextReviewOperator``).
    :param feature: The Airflow feature it needs (``human-in-the-loop operators``).
    :param minimum_airflow: The first Airflow version that has it (``3.1``).
    """

    def __init__(self, what: str, *, feature: str, minimum_airflow: str, **kwargs: object) -> None:
        self.what = what
        self.feature = feature
        self.minimum_airflow = minimum_airflow
        self.airflow_version = AIRFLOW_VERSION
        message = (
            f"{what} needs Airflow {minimum_airflow} or newer ({feature}); this is Airflow {AIRFLOW_VERSION}. "
            "See the provider README's 'Airflow versions' table."
        )
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class KontextWebhookSignatureError(KontextError):
    """
    A callback's ``X-Webhook-Signature``/``X-Webhook-Timestamp`` did not verify: answer it 401, do not trust it.

    The message says what failed (mismatch, stale or malformed timestamp, missing header) but
    never the HMAC key or the expected signature, so it is safe to log or return.

    :param reason: ``signature_mismatch``, ``timestamp_out_of_window``, ``timestamp_malformed``,
        ``signature_malformed`` or ``missing_header``.
    """

    def __init__(self, message: str, *, reason: str, **kwargs: object) -> None:
        self.reason = reason
        super().__init__(message, **kwargs)  # type: ignore[arg-type]

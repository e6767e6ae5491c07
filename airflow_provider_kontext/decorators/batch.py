"""``@task.kontext_batch``: a TaskFlow function that returns the requests of a whole batch.

The function runs on the worker when the task starts and returns a list whose items are prompt
strings or dicts of request fields. The decorator's keyword arguments are
:class:`~airflow_provider_kontext.operators.batch.KontextBatchGenerateOperator`'s other
arguments; from there on it *is* that operator: every item validated before any create, paced
creates, one trigger, results in request order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import task_decorator_factory

from airflow_provider_kontext._tasks.prepare import returned_fields
from airflow_provider_kontext.decorators._base import KontextDecoratedBase
from airflow_provider_kontext.exceptions import KontextValidationError
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.common.compat.sdk import Context, TaskDecorator

__all__ = ["kontext_batch_task"]


class _KontextBatchDecoratedOperator(KontextDecoratedBase, KontextBatchGenerateOperator):
    """
    Calls the decorated function for the requests, then runs :class:`KontextBatchGenerateOperator`.

    As with ``@task.kontext``, the returned requests are not rendered as Jinja, and the function
    should be deterministic so an Airflow retry re-attaches to the images already paid for.

    :param python_callable: The function returning the list of requests.
    :param op_args: Positional arguments for the function.
    :param op_kwargs: Keyword arguments for the function.
    """

    returned_field = "requests"
    custom_operator_name: str = "@task.kontext_batch"

    def execute(self, context: Context) -> Any:
        returned = self.call_function(context)
        if isinstance(returned, (str, bytes)) or not isinstance(returned, (list, tuple)):
            raise KontextValidationError(
                f"{self.custom_operator_name}: requests must be a list of prompts or request dicts, "
                f"got {type(returned).__name__}.",
                field="requests",
            )
        self.requests = [
            returned_fields(item, decorator=self.custom_operator_name, prefix=f"requests[{index}]")
            for index, item in enumerate(returned)
        ]
        return KontextBatchGenerateOperator.execute(self, context)  # validates every item before any create


def kontext_batch_task(
    python_callable: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """
    Wrap a function that returns a list of prompts (or request dicts) into one Kontext batch task.

    .. code-block:: python

        @task.kontext_batch(output_path="file:///data/thumbnails", deferrable=True)
        def thumbnails(titles: list[str]) -> list[dict[str, str]]:
            return [{"prompt": f"thumbnail for {t}", "aspect_ratio": "16:9"} for t in titles]

    The task returns :class:`KontextBatchGenerateOperator`'s list of result dicts.

    :param python_callable: The function to decorate.
    :param kwargs: :class:`KontextBatchGenerateOperator`'s arguments other than ``requests``.
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=False,  # the result is a list
        decorated_operator_class=_KontextBatchDecoratedOperator,
        **kwargs,
    )

"""``@task.kontext``: a TaskFlow function that returns the prompt (or the request) of one image.

The function runs on the worker when the task starts and returns the prompt as a string, or a
dict of request fields (``prompt``, ``input_image``, ``aspect_ratio``, ...). The decorator's
keyword arguments are :class:`~airflow_provider_kontext.operators.generate.KontextGenerateOperator`'s
other arguments; request fields given there are defaults the returned dict may override. From
there on it *is* that operator: same validation (before any create), same waiting, same result
and XComs, same re-attach on retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import task_decorator_factory

from airflow_provider_kontext._protocol.request import OPTIONAL_FIELDS
from airflow_provider_kontext._tasks.prepare import returned_fields, validate_item
from airflow_provider_kontext.decorators._base import KontextDecoratedBase
from airflow_provider_kontext.operators.generate import KontextGenerateOperator

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.common.compat.sdk import Context, TaskDecorator

__all__ = ["kontext_task"]

#: Validates the static arguments at parse time while the prompt is still the function's to return.
_PROMPT_STAND_IN = "prompt returned by the decorated function"


class _KontextDecoratedOperator(KontextDecoratedBase, KontextGenerateOperator):
    """
    Calls the decorated function for the request, then runs :class:`KontextGenerateOperator`.

    The returned prompt or fields are **not** rendered as Jinja: they are computed in Python
    (the function receives the task context), and a stray ``{{`` in, say, a product name must
    not render, let alone reach ``var``/``conn``. The decorator's own arguments are rendered as
    usual. On an Airflow retry the function runs again; keep it deterministic so the retry
    recognises the image it already paid for and re-attaches instead of creating another.

    :param python_callable: The function returning the prompt or the request dict.
    :param op_args: Positional arguments for the function.
    :param op_kwargs: Keyword arguments for the function.
    """

    returned_field = "prompt"
    custom_operator_name: str = "@task.kontext"

    def _fields_for_static_check(self) -> dict[str, Any] | None:
        fields = super()._fields_for_static_check()
        return None if fields is None else {**fields, "prompt": _PROMPT_STAND_IN}

    def execute(self, context: Context) -> Any:
        returned = returned_fields(self.call_function(context), decorator=self.custom_operator_name)
        fields = {**{name: getattr(self, name) for name in OPTIONAL_FIELDS}, **returned}
        validate_item(fields)  # unknown names and bad values, named, before anything is set or sent
        for name, value in fields.items():
            setattr(self, name, value)
        if "input" in returned:  # a Market request: its prompt, if any, is in its input
            self.prompt = returned.get("prompt")
        return KontextGenerateOperator.execute(self, context)


def kontext_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """
    Wrap a function that returns a prompt (or a request dict) into a Kontext image task.

    .. code-block:: python

        @task.kontext(aspect_ratio="1:1", output_path="file:///data/shots", deferrable=True)
        def product_shot(product: str) -> str:
            return f"studio photo of {product} on white"


        product_shot.expand(product=["mug", "lamp", "kettle"])

    The task returns :class:`KontextGenerateOperator`'s result dict. ``multiple_outputs``
    defaults to ``False`` whatever the function's return annotation says: the function returns
    the request, the task returns the result.

    :param python_callable: The function to decorate.
    :param multiple_outputs: Push each key of the result dict as its own XCom too.
    :param kwargs: :class:`KontextGenerateOperator`'s arguments other than ``prompt``.
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=bool(multiple_outputs),
        decorated_operator_class=_KontextDecoratedOperator,
        **kwargs,
    )

"""What ``@task.kontext`` and ``@task.kontext_batch`` share: a function that returns one operator argument."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    SET_DURING_EXECUTION,
    DecoratedOperator,
    context_merge,
    determine_kwargs,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

    from airflow.providers.common.compat.sdk import Context


class KontextDecoratedBase(DecoratedOperator):
    """
    A ``DecoratedOperator`` whose function returns the operator's ``returned_field`` at run time.

    Subclass it together with the operator (``class X(KontextDecoratedBase, SomeOperator)``)
    and name the field the function replaces. That field is set only during execution and is not
    a template field: the function computes it in Python, so a stray ``{{`` in its value must not
    render. Every other argument of the operator stays templated, as do ``op_args``/``op_kwargs``.

    :param python_callable: The decorated function.
    :param op_args: Positional arguments for the function.
    :param op_kwargs: Keyword arguments for the function.
    """

    #: The operator argument the function returns (``prompt``, ``requests``).
    returned_field: ClassVar[str]
    template_fields_renderers: ClassVar[dict[str, str]] = {**DecoratedOperator.template_fields_renderers}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The bases' template fields (op_args and op_kwargs, then the operator's), less the returned one.
        cls.template_fields = tuple(
            name
            for base in cls.__bases__
            for name in getattr(base, "template_fields", ())
            if name != cls.returned_field
        )

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        returned: dict[str, Any] = {self.returned_field: SET_DURING_EXECUTION}
        super().__init__(python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **returned, **kwargs)

    def call_function(self, context: Context) -> Any:
        """Call the decorated function as Airflow does: context keys it names, ``op_args``/``op_kwargs``."""
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        return self.python_callable(*self.op_args, **kwargs)

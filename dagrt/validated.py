"""Options given as a model, a dict of its fields, or a bool: one way to take them.

``Client(locality=...)`` and ``Client(cache=...)`` (and ``@task(locality=...)``) accept
their pydantic model, a dict of its fields, ``True`` or ``False``; a wrong name or
type is a ``ValueError`` that names the field and lists the fields there are.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["options_of"]

M = TypeVar("M", bound=BaseModel)


def options_of(
    cls: type[M], value: Any, *, name: str, true: dict[str, Any], false: dict[str, Any]
) -> M:
    """``value`` as ``cls``: the model itself, a dict of its fields, ``True`` or ``False``
    (the fields ``true`` or ``false`` say), or ``None`` (the defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, bool):
        return cls(**(true if value else false))
    if not isinstance(value, dict):
        raise TypeError(
            f"{name} must be a dagrt.{cls.__name__}, a dict of its fields, True or False,"
            f" got {value!r}"
        )
    try:
        return cls(**value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(
            f"bad {name} options ({problems}); the fields are {', '.join(cls.model_fields)}"
        ) from None

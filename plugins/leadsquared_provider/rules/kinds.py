"""One parser per kind of value a run is given: whole number, finite number, flag, list.

Shared by the run's params, the reset scope and the operator, so that one value is read the same way
everywhere: ``4``, a REST trigger's ``4.0`` and a rendered template's ``"4.0"`` are the whole number 4.
Each raises :class:`ParamError` naming the value at fault.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

TRUE_FALSE = ("true", "false")


class ParamError(ValueError):
    """A value is not of its kind, or out of its range: ``"{name} must be {requirement}, got {raw!r}"``."""

    def __init__(self, name: str, requirement: str, raw: object) -> None:
        super().__init__(f"{name} must be {requirement}, got {raw!r}")
        self.name = name


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_range(name: str, value: float, raw: object, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ParamError(name, f"at least {_bound(minimum)}", raw)
    if maximum is not None and value > maximum:
        raise ParamError(name, f"at most {_bound(maximum)}", raw)


def finite_number(name: str, raw: object, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """A finite number, or its text; never a bool."""
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ParamError(name, "a finite number", raw) from None
    if not math.isfinite(value):
        raise ParamError(name, "a finite number", raw)
    _check_range(name, value, raw, minimum, maximum)
    return value


def whole_number(name: str, raw: object, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int, an integral float (a REST trigger's ``4.0``) or the text of either (a rendered ``"4.0"``);
    never a bool."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        try:
            number = finite_number(name, raw)
        except ParamError:
            raise ParamError(name, "a whole number", raw) from None
        if not number.is_integer():
            raise ParamError(name, "a whole number", raw)
        value = int(number)
    _check_range(name, value, raw, minimum, maximum)
    return value


def flag(name: str, raw: object) -> bool:
    """A bool, or the text ``"true"``/``"false"`` in any case (``bool("false")`` would be true)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in TRUE_FALSE:
        return raw.strip().lower() == "true"
    raise ParamError(name, "true or false", raw)


def listed(name: str, raw: object) -> list[object]:
    """The items of a list (any iterable but text); ``None`` is the empty list."""
    if raw is None:
        return []
    if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
        raise ParamError(name, "a list", raw)
    return list(raw)

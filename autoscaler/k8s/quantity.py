"""resource.Quantity parsing and canonical formatting, as apimachinery does it.

Values are carried as :class:`decimal.Decimal` so that ``100m`` or ``0.1`` never pick up binary
floating-point error; integer helpers (``milli_value``, ``value``) round up like Go's
``Quantity.MilliValue()`` and ``Quantity.Value()``.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal

_CTX = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]

_QUANTITY_RE = re.compile(
    r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<exp>[eE][+-]?\d+)|(?P<dec>[numkMGTPE]?))$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


#: Decimal exponent bound: apimachinery keeps any exponent but its int64 accessors cannot hold
#: such values anyway, and carrying a 10**1_000_000 here would stall every integer conversion.
_MAX_EXPONENT = 1000


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """Parse ``"250m"``, ``"1.5Gi"``, ``"1e3"``, ``2`` ... into an exact Decimal."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise QuantityError(f"quantities must match the regular expression: got {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    text = str(value).strip()
    m = _QUANTITY_RE.match(text)
    if not m:
        raise QuantityError(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}"
        )
    num = Decimal(m.group("num"))
    if m.group("bin"):
        return _CTX.multiply(num, Decimal(1024) ** _BINARY[m.group("bin")])
    if m.group("exp"):
        exp = int(m.group("exp")[1:])
        if not num:
            return num
        if abs(num.adjusted() + exp) > _MAX_EXPONENT:
            raise QuantityError(f"quantity {text!r} is out of range: its magnitude must be within "
                                f"1e-{_MAX_EXPONENT} .. 1e{_MAX_EXPONENT}")
        return _CTX.scaleb(num, exp)
    return _CTX.scaleb(num, _DECIMAL[m.group("dec") or ""])


def is_quantity(value: object) -> bool:
    try:
        parse_quantity(value)  # type: ignore[arg-type]
    except (QuantityError, decimal.InvalidOperation):
        return False
    return True


def _ceil_int(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=decimal.ROUND_CEILING))


def milli_value(value: str | int | float | Decimal) -> int:
    """Go's ``Quantity.MilliValue()``: thousandths, rounded up."""
    return _ceil_int(_CTX.multiply(parse_quantity(value), Decimal(1000)))


def value(value: str | int | float | Decimal) -> int:
    """Go's ``Quantity.Value()``: the integer value, rounded up."""
    return _ceil_int(parse_quantity(value))


def format_decimal_si(amount: Decimal | int, base_exponent: int = 0) -> str:
    """Canonical DecimalSI string of ``amount * 10**base_exponent``.

    Trailing zeros move into the exponent, which is then lowered to a multiple of three and
    named by its SI suffix: 1500000000n -> ``1500m``, 2000000000n -> ``2``. Values finer than
    nano are rounded up to nano, as apimachinery does when it canonicalizes.
    """
    d = Decimal(amount).scaleb(base_exponent, _CTX)
    if d == 0:
        return "0"
    sign = "-" if d < 0 else ""
    d = abs(d)
    nanos = _ceil_int(d.scaleb(9, _CTX))
    m, e = nanos, -9
    while m % 10 == 0:
        m //= 10
        e += 1
    k = e % 3
    m *= 10**k
    e -= k
    if e > 18:
        m *= 10 ** (e - 18)
        e = 18
    return f"{sign}{m}{_DECIMAL_SUFFIX[e]}"


def format_binary_si(amount: Decimal | int) -> str:
    """Canonical BinarySI string: ``12240Ki``, ``1Mi``; small or non-integer values as DecimalSI."""
    d = Decimal(amount)
    if d == 0:
        return "0"
    if d != d.to_integral_value() or abs(d) < 1024:
        return format_decimal_si(d)
    n = int(d)
    sign = "-" if n < 0 else ""
    n = abs(n)
    k = 0
    while k < 6 and n % 1024 == 0:
        n //= 1024
        k += 1
    return f"{sign}{n}{_BINARY_SUFFIX[k]}"


def format_cpu_nanocores(nanocores: int) -> str:
    """metrics-server's CPU usage string, e.g. ``3142466n``, ``20m``, ``2``."""
    return format_decimal_si(int(nanocores), -9)


def format_memory_bytes(num_bytes: int) -> str:
    """metrics-server's memory usage string, e.g. ``12240Ki``, ``1Mi``, ``512``."""
    return format_binary_si(int(num_bytes))


def format_milli(milli: int) -> str:
    """``resource.NewMilliQuantity(milli, DecimalSI).String()``: ``500m``, ``2``, ``1500m``."""
    return format_decimal_si(int(milli), -3)


def format_like(amount: Decimal | int, original: str) -> str:
    """Format ``amount`` in the family (binary or decimal SI) the ``original`` string used."""
    if any(original.endswith(s) for s in _BINARY):
        return format_binary_si(amount)
    return format_decimal_si(Decimal(amount))

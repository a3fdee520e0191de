"""Number formatting exactly as the kubelet's Prometheus encoder writes it (Go's
``strconv.FormatFloat(v, 'g', -1, 64)``): shortest round-trip digits, ``%e`` form when the decimal
exponent is < -4 or >= 6 (``1.253376e+07``), plain otherwise (``183.0417``, ``0``)."""

from __future__ import annotations

import math


def go_float(v: float) -> str:
    a = v if v >= 0 else -v
    if 1e-4 <= a < 1e6:
        r = repr(float(v))  # Python is positional in this range too; only "x.0" differs
        return r[:-2] if r.endswith(".0") else r
    if v == 0:
        return "0"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    r = repr(float(v))
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    if "e" in r:
        mant, e = r.split("e")
        exp = int(e)
    else:
        mant, exp = r, 0
    ip, _, fp = mant.partition(".")
    s = ip + fp
    stripped = s.lstrip("0")
    digits = stripped.rstrip("0") or "0"
    dp = len(stripped) + exp - len(fp)
    x = dp - 1
    if x < -4 or x >= 6:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return f"{sign}{digits[:dp]}.{digits[dp:]}"

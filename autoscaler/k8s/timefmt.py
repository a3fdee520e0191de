"""Kubernetes time and duration formats (metav1.Time, metav1.MicroTime, Go time.Duration)."""

from __future__ import annotations

import datetime as dt
import re

_UTC = dt.UTC
ZERO_TIME = "0001-01-01T00:00:00Z"


def format_time(ts: float | dt.datetime) -> str:
    """metav1.Time: RFC 3339 in UTC, whole seconds (fraction truncated), ``Z`` suffix."""
    if isinstance(ts, dt.datetime):
        d = ts.astimezone(_UTC) if ts.tzinfo else ts.replace(tzinfo=_UTC)
    else:
        d = dt.datetime.fromtimestamp(int(ts // 1), _UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(ts: float) -> str:
    """metav1.MicroTime (events.k8s.io eventTime, Lease renewTime): six fractional digits."""
    d = dt.datetime.fromtimestamp(ts, _UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_time(text: str) -> float:
    """Parse RFC 3339 (any fraction, ``Z`` or offset) into Unix seconds.

    The zero time ``0001-01-01T00:00:00Z`` parses to its (very negative) Unix value, so that it
    compares as "long ago" the way Go's zero time does.
    """
    m = _RFC3339_RE.match(text.strip())
    if not m:
        raise ValueError(f"invalid RFC 3339 time {text!r}")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    frac = float(m.group(7)) if m.group(7) else 0.0
    tz = m.group(8)
    if tz in ("Z", "z"):
        offset = 0
    else:
        sign = 1 if tz[0] == "+" else -1
        offset = sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    base = dt.datetime(y, mo, d, h, mi, s, tzinfo=_UTC)
    epoch = dt.datetime(1970, 1, 1, tzinfo=_UTC)
    return (base - epoch).total_seconds() + frac - offset


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` of ``seconds``: ``0s``, ``500ms``, ``15.953s``, ``1m0s``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns, size) + unit
    h, rem = divmod(ns, 3_600_000_000_000)
    m, rem = divmod(rem, 60_000_000_000)
    s = _trim(rem, 1_000_000_000) + "s"
    if h:
        return f"{sign}{h}h{m}m{s}"
    if m:
        return f"{sign}{m}m{s}"
    return sign + s


def _trim(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse Go duration syntax (``1m0s``, ``15s``, ``1.5h``, ``300ms``) into seconds."""
    t = text.strip()
    if t in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if t[:1] in "+-" and t:
        sign = -1.0 if t[0] == "-" else 1.0
        t = t[1:]
    pos, total = 0, 0.0
    if not t:
        raise ValueError(f"invalid duration {text!r}")
    while pos < len(t):
        m = _DURATION_PART.match(t, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return sign * total


def duration_flag(text: str) -> float:
    """argparse ``type`` for duration flags: Go syntax (``15s``, ``5m0s``) or plain seconds."""
    import argparse

    try:
        return float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (for example 15s, 5m0s or seconds)") from None

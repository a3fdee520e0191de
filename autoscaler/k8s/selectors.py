"""Label and field selectors with apimachinery's grammar, matching rules and string form.

Label selectors accept the full set-based syntax (``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``,
``a notin (x)``, ``a``, ``!a``, ``a>3``, ``a<3``); field selectors accept ``=``, ``==`` and ``!=``
with backslash escapes. Errors are :class:`SelectorError` with the message kube-apiserver gives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

OPS_SET = ("in", "notin")


class SelectorError(ValueError):
    """A selector that cannot be parsed or is not valid."""


def validate_label_key(key: str) -> None:
    if not isinstance(key, str):
        raise SelectorError(f"invalid label key {key!r}: must be a string")
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.match(prefix)):
        raise SelectorError(f"invalid label key {key!r}: prefix part must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        raise SelectorError(
            f"invalid label key {key!r}: name part must consist of alphanumeric characters, '-', '_' "
            "or '.', and must start and end with an alphanumeric character"
        )


def validate_label_value(value: str) -> None:
    if value and (len(value) > 63 or not _NAME_RE.match(value)):
        raise SelectorError(
            f"invalid label value: {value!r}: a valid label must be an empty string or consist of "
            "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
            "character"
        )


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector. ``op`` is one of =, !=, in, notin, exists, !, gt, lt."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        v = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and v in self.values
        if self.op in ("!=", "notin"):
            return not present or v not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("gt", "lt"):
            if not present:
                return False
            try:
                have, want = int(v), int(self.values[0])  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return False
            return have > want if self.op == "gt" else have < want
        raise AssertionError(self.op)

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        if self.op in ("gt", "lt"):
            return f"{self.key}{'>' if self.op == 'gt' else '<'}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector. ``nothing`` is the selector that matches no object (a nil selector)."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector matches everything."""
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)

_TOKEN_RE = re.compile(r"\s*(==|!=|=|!|,|\(|\)|>|<|[^\s=!,()<>]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if not m:  # pragma: no cover - the pattern accepts every non-space character
            raise SelectorError(f"unable to parse requirement: unexpected character at {pos}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _sorted(reqs: list[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(reqs, key=lambda r: r.key))


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the string form used by ``?labelSelector=`` and ``kubectl -l``.

    The empty string selects everything. Requirements are sorted by key, as apimachinery does, so
    ``str()`` gives the canonical form.
    """
    if text is None or not text.strip():
        return EVERYTHING
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def expect_value(idx: int) -> str:
        if idx >= len(toks) or toks[idx] in {",", "(", ")", "=", "==", "!=", "!", ">", "<"}:
            found = toks[idx] if idx < len(toks) else "end of string"
            raise SelectorError(f"unable to parse requirement: found '{found}', expected: identifier")
        return toks[idx]

    while i < len(toks):
        try:
            i = _requirement(toks, i, reqs, expect_value)
        except SelectorError as e:  # apimachinery prefixes what goes wrong inside one requirement
            msg = str(e)
            raise SelectorError(msg if msg.startswith("unable to parse requirement") else
                                f"unable to parse requirement: {msg}") from None
        if i < len(toks):
            if toks[i] != ",":
                raise SelectorError(f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
            if i >= len(toks):
                raise SelectorError("found 'end of string', expected: identifier")
    return LabelSelector(_sorted(reqs))


def _requirement(toks: list[str], i: int, reqs: list[Requirement], expect_value: Callable[[int], str]) -> int:
    """Parse the requirement at ``toks[i]`` into ``reqs``; the index after it."""
    tok = toks[i]
    if tok == "!":
        key = expect_value(i + 1)
        validate_label_key(key)
        reqs.append(Requirement(key, "!"))
        i += 2
    else:
        key = expect_value(i)
        validate_label_key(key)
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if nxt is None or nxt == ",":
            reqs.append(Requirement(key, "exists"))
            i += 1
        elif nxt in ("=", "==", "!="):
            # An empty value is allowed: "a=" selects a present-and-empty label.
            if i + 2 >= len(toks) or toks[i + 2] == ",":
                val = ""
                i += 2
            else:
                val = expect_value(i + 2)
                i += 3
            validate_label_value(val)
            reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", (val,)))
        elif nxt in (">", "<"):
            val = expect_value(i + 2)
            try:
                int(val)
            except ValueError:
                raise SelectorError(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an "
                    f"integer: {val!r}"
                ) from None
            reqs.append(Requirement(key, "gt" if nxt == ">" else "lt", (val,)))
            i += 3
        elif nxt in OPS_SET:
            if i + 2 >= len(toks) or toks[i + 2] != "(":
                found = toks[i + 2] if i + 2 < len(toks) else "end of string"
                raise SelectorError(f"unable to parse requirement: found '{found}', expected: '('")
            j = i + 3
            vals: list[str] = []
            while True:
                if j >= len(toks):
                    raise SelectorError("unable to parse requirement: found 'end of string', expected: ')'")
                if toks[j] == ")":
                    j += 1
                    break
                if toks[j] == ",":
                    j += 1
                    continue
                validate_label_value(toks[j])
                vals.append(toks[j])
                j += 1
            if not vals and nxt == "in":
                raise SelectorError(
                    "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty"
                )
            reqs.append(Requirement(key, nxt, tuple(sorted(set(vals)))))
            i = j
        else:
            raise SelectorError(
                f"unable to parse requirement: found '{nxt}', expected: "
                "in, notin, =, ==, !=, gt, lt"
            )
    return i


def selector_from_object(obj: Mapping[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: ``None`` selects nothing, ``{}`` selects everything."""
    if obj is None:
        return NOTHING
    if not isinstance(obj, Mapping):
        raise SelectorError(f"label selector must be an object, got {obj!r}")
    labels, exprs = obj.get("matchLabels") or {}, obj.get("matchExpressions") or []
    if not isinstance(labels, Mapping):
        raise SelectorError(f"matchLabels: must be a map of label keys to values, got {labels!r}")
    if not isinstance(exprs, list):
        raise SelectorError(f"matchExpressions: must be a list, got {exprs!r}")
    reqs: list[Requirement] = []
    for key, val in sorted(labels.items(), key=lambda kv: str(kv[0])):
        validate_label_key(key)
        validate_label_value(str(val))
        reqs.append(Requirement(key, "=", (str(val),)))
    for i, expr in enumerate(exprs):
        if not isinstance(expr, Mapping) or not isinstance(expr.get("values") or [], list):
            raise SelectorError(f"matchExpressions[{i}]: must be an object with key, operator and a values list")
        key = expr.get("key", "")
        op = expr.get("operator")
        vals = tuple(sorted(set(str(v) for v in expr.get("values") or [])))
        validate_label_key(key)
        if op in ("In", "NotIn"):
            if not vals:
                raise SelectorError("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty")
            reqs.append(Requirement(key, "in" if op == "In" else "notin", vals))
        elif op in ("Exists", "DoesNotExist"):
            if vals:
                raise SelectorError("values: Invalid value: values set must be empty for exists and does not exist")
            reqs.append(Requirement(key, "exists" if op == "Exists" else "!"))
        else:
            raise SelectorError(f"{op!r} is not a valid label selector operator")
    return LabelSelector(_sorted(reqs))


# ---------------------------------------------------------------------------------------------
# Field selectors


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        have = fields.get(self.field, "")
        return (have == self.value) if self.op == "=" else (have != self.value)


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = field(default_factory=tuple)

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def fields(self) -> set[str]:
        return {r.field for r in self.requirements}

    def __str__(self) -> str:
        return ",".join(f"{r.field}{r.op}{_escape_field(r.value)}" for r in self.requirements)


def _escape_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape_field(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector value {value!r}: invalid escape sequence")
            out.append(value[i + 1])
            i += 2
            continue
        if c in ",=":
            raise SelectorError(f"invalid field selector value {value!r}: unescaped {c!r}")
        out.append(c)
        i += 1
    return "".join(out)


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse ``metadata.name=foo,status.phase!=Running`` (``fields.ParseSelector``)."""
    if text is None or not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for part in _split_unescaped(text, ","):
        if not part:
            continue
        for op in ("!=", "==", "="):
            idx = _find_unescaped(part, op)
            if idx >= 0:
                key, val = part[:idx].strip(), part[idx + len(op) :]
                if not key:
                    raise SelectorError(f"invalid selector: {text!r}; can't understand {part!r}")
                reqs.append(FieldRequirement(key, "!=" if op == "!=" else "=", _unescape_field(val)))
                break
        else:
            raise SelectorError(f"invalid selector: {text!r}; can't understand {part!r}")
    return FieldSelector(tuple(reqs))


def _find_unescaped(text: str, token: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(token, i):
            return i
        i += 1
    return -1

"""Kubernetes ``Status`` errors with kube-apiserver's codes, reasons and message wording."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error that is answered to a client as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def qualified(resource: str, group: str = "") -> str:
    """``pods`` or ``deployments.apps``: the resource name kube-apiserver puts in messages."""
    return f"{resource}.{group}" if group else resource


def _details(name: str | None, resource: str, group: str) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = resource
    return d


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(resource, group)} "{name}" not found',
                    _details(name, resource, group))


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(resource, group)} "{name}" already exists',
                    _details(name, resource, group))


def conflict(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        _details(name, resource, group),
    )


def invalid(kind: str, name: str, group: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 Invalid; ``causes`` are (field, message) pairs such as ("spec.minReplicas", "Invalid value: 0: ...")."""
    gk = f"{kind}.{group}" if group else kind
    text = "; ".join(f"{f}: {m}" for f, m in causes) if len(causes) == 1 else (
        "[" + ", ".join(f"{f}: {m}" for f, m in causes) + "]"
    )
    return ApiError(
        422,
        "Invalid",
        f'{gk} "{name}" is invalid: {text}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": _cause_reason(m), "message": m, "field": f} for f, m in causes
            ],
        },
    )


def _cause_reason(message: str) -> str:
    if message.startswith("Required value"):
        return "FieldValueRequired"
    if message.startswith("Unsupported value"):
        return "FieldValueNotSupported"
    if message.startswith("Forbidden"):
        return "FieldValueForbidden"
    if message.startswith("Duplicate value"):
        return "FieldValueDuplicate"
    return "FieldValueInvalid"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> ApiError:
    return ApiError(401, "Unauthorized", message)


def forbidden(user: str, verb: str, resource: str, group: str = "", name: str = "",
              namespace: str = "", subresource: str = "") -> ApiError:
    """403 with kube-apiserver's RBAC wording."""
    res = f"{resource}/{subresource}" if subresource else resource
    what = f'{qualified(resource, group)} "{name}"' if name else qualified(resource, group)
    scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    msg = (f'{what} is forbidden: User "{user}" cannot {verb} resource "{res}" in API group '
           f'"{group}"{scope}')
    return ApiError(403, "Forbidden", msg, _details(name, resource, group))


def forbidden_path(user: str, verb: str, path: str) -> ApiError:
    return ApiError(403, "Forbidden", f'forbidden: User "{user}" cannot {verb} path "{path}"', {})


def gone(message: str) -> ApiError:
    """410 Expired: a watch or list from a resourceVersion that was compacted away."""
    return ApiError(410, "Expired", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got "{content_type}")')


def not_acceptable(message: str) -> ApiError:
    return ApiError(406, "NotAcceptable", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message: str = "the server is currently unable to handle the request") -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def too_many_requests(message: str = "Too many requests, please try again later.") -> ApiError:
    return ApiError(429, "TooManyRequests", message)

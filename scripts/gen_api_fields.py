#!/usr/bin/env python3
"""Regenerate ``autoscaler/k8s/api_fields.json``: the JSON fields of every built-in model, read from
the ``kubernetes`` client's generated models (the OpenAPI the API server publishes).

:mod:`autoscaler.k8s.fields` reads this table instead of importing the client: importing
``kubernetes`` takes about a third of a second, which `autoscaler explain` and `autoscaler sim replay`
would otherwise spend before doing anything. ``tests/test_k8s_fields.py`` checks the table against
the installed client.

Usage: python3 scripts/gen_api_fields.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "autoscaler" / "k8s" / "api_fields.json"


def table() -> dict[str, Any]:
    """``{"client": version, "models": {model: {json field: type string}}}`` from the installed client."""
    import kubernetes
    from kubernetes.client import models

    out: dict[str, dict[str, str]] = {}
    for name in sorted(dir(models)):
        cls = getattr(models, name)
        if isinstance(cls, type) and isinstance(getattr(cls, "openapi_types", None), dict):
            out[name] = {cls.attribute_map[attr]: typ for attr, typ in cls.openapi_types.items()}
    return {"client": kubernetes.__version__, "models": out}


def main() -> None:
    OUT.write_text(json.dumps(table(), separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

"""A kube-state-metrics equivalent over the emulated API server's objects, for Prometheus to scrape.

It serves, on plain HTTP ``/metrics`` as kube-state-metrics v2 does, the series the Prometheus
import reads, with kube-state-metrics' names and label names (internal/store/pod.go,
replicaset.go, deployment.go, statefulset.go, horizontalpodautoscaler.go): ``kube_pod_owner``,
``kube_pod_created``, ``kube_pod_start_time``, ``kube_pod_status_ready`` (condition
true/false/unknown), ``kube_pod_status_ready_time``, ``kube_pod_container_resource_requests`` /
``_limits`` (``resource``, ``unit``), ``kube_replicaset_owner``, ``kube_deployment_spec_replicas``,
``kube_deployment_status_replicas``, ``kube_statefulset_replicas`` and the HPA's ``_info``,
``_spec_min_replicas``, ``_spec_max_replicas``, ``_spec_target_metric``,
``_status_current_replicas`` and ``_status_desired_replicas``. Like kube-state-metrics it writes
no timestamps: each scrape is "now".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from autoscaler.k8s.quantity import parse_quantity
from autoscaler.k8s.timefmt import parse_time
from sim.kubelet.gofmt import go_float

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _esc(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, Any]]) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in pairs) + "}"


def _unix(v: Any) -> float | None:
    try:
        return float(int(parse_time(str(v)))) if v else None
    except ValueError:
        return None


class Families:
    """Metric families in first-use order, each with its HELP/TYPE header."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}

    def add(self, name: str, labels: Iterable[tuple[str, Any]], value: float) -> None:
        self.lines.setdefault(name, []).append(f"{name}{_labels(labels)} {go_float(float(value))}\n")

    def render(self) -> bytes:
        out = []
        for name, lines in self.lines.items():
            out.append(f"# HELP {name} {name.replace('_', ' ')}\n# TYPE {name} gauge\n")
            out.extend(lines)
        return "".join(out).encode()


def _pod(f: Families, pod: dict[str, Any]) -> None:
    meta, spec, st = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    base = [("namespace", meta.get("namespace")), ("pod", meta.get("name")), ("uid", meta.get("uid"))]
    owners = meta.get("ownerReferences") or []
    for ref in owners:
        f.add("kube_pod_owner", [*base, ("owner_kind", ref.get("kind")), ("owner_name", ref.get("name")),
                                 ("owner_is_controller", "true" if ref.get("controller") else "false")], 1)
    if not owners:
        f.add("kube_pod_owner", [*base, ("owner_kind", ""), ("owner_name", ""), ("owner_is_controller", "")], 1)
    created = _unix(meta.get("creationTimestamp"))
    if created is not None:
        f.add("kube_pod_created", base, created)
    started = _unix(st.get("startTime"))
    if started is not None:
        f.add("kube_pod_start_time", base, started)
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None:
        status = str(ready.get("status") or "Unknown")
        for cond in ("true", "false", "unknown"):
            f.add("kube_pod_status_ready", [*base, ("condition", cond)], 1 if status.lower() == cond else 0)
        t = _unix(ready.get("lastTransitionTime"))
        if status == "True" and t is not None:
            f.add("kube_pod_status_ready_time", base, t)
    node = spec.get("nodeName") or ""
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        for family, values in (("kube_pod_container_resource_requests", res.get("requests") or {}),
                               ("kube_pod_container_resource_limits", res.get("limits") or {})):
            for resource, unit in (("cpu", "core"), ("memory", "byte")):
                if resource in values:
                    f.add(family, [*base, ("container", c.get("name")), ("node", node), ("resource", resource),
                                   ("unit", unit)], float(parse_quantity(str(values[resource]))))


def _hpa(f: Families, hpa: dict[str, Any]) -> None:
    meta, spec, st = hpa.get("metadata") or {}, hpa.get("spec") or {}, hpa.get("status") or {}
    base = [("namespace", meta.get("namespace")), ("horizontalpodautoscaler", meta.get("name"))]
    ref = spec.get("scaleTargetRef") or {}
    f.add("kube_horizontalpodautoscaler_info", [*base, ("scaletargetref_api_version", ref.get("apiVersion", "")),
                                                ("scaletargetref_kind", ref.get("kind", "")),
                                                ("scaletargetref_name", ref.get("name", ""))], 1)
    f.add("kube_horizontalpodautoscaler_spec_min_replicas", base, spec.get("minReplicas", 1))
    f.add("kube_horizontalpodautoscaler_spec_max_replicas", base, spec.get("maxReplicas", 0))
    for m in spec.get("metrics") or []:
        kind = m.get("type")
        src = m.get({"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
                     "Object": "object", "External": "external"}.get(kind, ""), {}) or {}
        name = src.get("name") if kind in ("Resource", "ContainerResource") else (src.get("metric") or {}).get("name")
        target = src.get("target") or {}
        for key, typ in (("value", "value"), ("averageValue", "average"), ("averageUtilization", "utilization")):
            if key in target:
                v = target[key] if key == "averageUtilization" else float(parse_quantity(str(target[key])))
                f.add("kube_horizontalpodautoscaler_spec_target_metric",
                      [*base, ("metric_name", name), ("metric_target_type", typ),
                       ("container", src.get("container", ""))], v)
    f.add("kube_horizontalpodautoscaler_status_current_replicas", base, st.get("currentReplicas", 0))
    f.add("kube_horizontalpodautoscaler_status_desired_replicas", base, st.get("desiredReplicas", 0))


def render(store: Any) -> bytes:
    """The /metrics body for the objects in ``store`` (an ObjectStore)."""
    f = Families()
    for pod in store.list("pods")[0]:
        _pod(f, pod)
    for rs in store.list("replicasets.apps")[0]:
        meta = rs.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            f.add("kube_replicaset_owner", [("namespace", meta.get("namespace")), ("replicaset", meta.get("name")),
                                            ("owner_kind", ref.get("kind")), ("owner_name", ref.get("name")),
                                            ("owner_is_controller", "true" if ref.get("controller") else "false")], 1)
    for d in store.list("deployments.apps")[0]:
        lab = [("namespace", d["metadata"].get("namespace")), ("deployment", d["metadata"].get("name"))]
        f.add("kube_deployment_spec_replicas", lab, (d.get("spec") or {}).get("replicas", 1))
        f.add("kube_deployment_status_replicas", lab, (d.get("status") or {}).get("replicas", 0))
    for s in store.list("statefulsets.apps")[0]:
        lab = [("namespace", s["metadata"].get("namespace")), ("statefulset", s["metadata"].get("name"))]
        f.add("kube_statefulset_replicas", lab, (s.get("spec") or {}).get("replicas", 1))
    for h in store.list("horizontalpodautoscalers.autoscaling")[0]:
        _hpa(f, h)
    return f.render()


class KubeStateMetricsServer:
    """Serves :func:`render` of ``store`` on http://``host``:``port``/metrics from the store's loop."""

    def __init__(self, store: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store, self.host, self.port = store, host, port
        self._runner: Any = None

    async def start(self) -> KubeStateMetricsServer:
        from aiohttp import web

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=render(self.store), headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


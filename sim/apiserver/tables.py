"""Server-side printing (``meta.k8s.io/v1`` Table) with kube-apiserver's columns per resource, so
``kubectl get`` against the emulator shows what it shows against a real cluster."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from autoscaler.k8s.selectors import selector_from_object
from autoscaler.k8s.timefmt import parse_time

from .crd import value_at
from .resources import PrinterColumn

Col = tuple[str, str, str, int]  # name, type, description, priority

_NAME: Col = ("Name", "string", "Name must be unique within a namespace.", 0)
_AGE: Col = ("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was "
             "created.", 0)


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration (the Age column)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _since(ts: str | None, now: float) -> str:
    if not ts:
        return "<unknown>"
    try:
        return human_duration(now - parse_time(ts))
    except ValueError:
        return "<unknown>"


def _age(obj: dict, now: float) -> str:
    return _since(obj["metadata"].get("creationTimestamp"), now)


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for p in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(p)
    return default if obj is None else obj


def _containers_images(spec: dict) -> tuple[str, str]:
    cs = _get(spec, "template", "spec", "containers", default=[])
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _selector(spec: dict) -> str:
    try:
        s = str(selector_from_object(spec.get("selector")))
    except Exception:
        return "<none>"
    return s or "<none>"


# ---------------------------------------------------------------------------------------------
# pods


def _pod_row(pod: dict, now: float) -> list:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    restarts, ready, total = 0, 0, len(spec.get("containers") or [])
    last_restart = None
    reason = status.get("reason") or status.get("phase") or ""
    initializing = False
    for i, c in enumerate(status.get("initContainerStatuses") or []):
        restarts += c.get("restartCount", 0)
        term = _get(c, "state", "terminated")
        waiting = _get(c, "state", "waiting")
        if term and term.get("exitCode", 0) == 0:
            continue
        if term:
            reason = "Init:" + (term.get("reason") or f"Signal:{term.get('signal')}" if term.get("signal")
                                else "Init:" + (term.get("reason") or f"ExitCode:{term.get('exitCode')}"))
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for c in reversed(status.get("containerStatuses") or []):
            restarts += c.get("restartCount", 0)
            lt = _get(c, "lastState", "terminated", "finishedAt")
            if lt and (last_restart is None or lt > last_restart):
                last_restart = lt
            waiting, term = _get(c, "state", "waiting"), _get(c, "state", "terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}"
            elif c.get("ready") and _get(c, "state", "running"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "NotReady" if not any(
                cond.get("type") == "Ready" and cond.get("status") == "True"
                for cond in status.get("conditions") or []) else "Running"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    restarts_s = str(restarts)
    if restarts and last_restart:
        restarts_s = f"{restarts} ({_since(last_restart, now)} ago)"
    ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")]
    ip = ips[0] if ips else (status.get("podIP") or "<none>")
    gates = spec.get("readinessGates") or []
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        ok = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_s = f"{ok}/{len(gates)}"
    else:
        gates_s = "<none>"
    return [pod["metadata"]["name"], f"{ready}/{total}", reason, restarts_s, _age(pod, now), ip,
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gates_s]


_POD_COLS: list[Col] = [
    _NAME,
    ("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
    ("Status", "string", "The aggregate status of the containers in this pod.", 0),
    ("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last "
     "container in this pod has restarted.", 0),
    _AGE,
    ("IP", "string", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet "
     "allocated.", 1),
    ("Node", "string", "NodeName is a request to schedule this pod onto a specific node.", 1),
    ("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node.", 1),
    ("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
]


# ---------------------------------------------------------------------------------------------
# nodes


def _node_row(node: dict, now: float) -> list:
    md, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
    ready = "Unknown"
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            ready = "Ready" if c.get("status") == "True" else "NotReady"
    states = [ready]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = sorted(
        {k[len("node-role.kubernetes.io/"):] for k in (md.get("labels") or {}) if
         k.startswith("node-role.kubernetes.io/") and k[len("node-role.kubernetes.io/"):]}
        | ({v for k, v in (md.get("labels") or {}).items() if k == "kubernetes.io/role" and v})
    )
    info = status.get("nodeInfo") or {}
    internal = [a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"]
    external = [a.get("address") for a in status.get("addresses") or [] if a.get("type") == "ExternalIP"]
    return [md["name"], ",".join(states), ",".join(roles) or "<none>", _age(node, now),
            info.get("kubeletVersion", ""), internal[0] if internal else "<none>",
            external[0] if external else "<none>", info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


_NODE_COLS: list[Col] = [
    _NAME,
    ("Status", "string", "The status of the node", 0),
    ("Roles", "string", "The roles of the node", 0),
    _AGE,
    ("Version", "string", "Kubelet Version reported by the node.", 0),
    ("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
    ("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
    ("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
    ("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
    ("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. "
     "containerd://1.4.2).", 1),
]


# ---------------------------------------------------------------------------------------------
# workloads


def _deploy_row(d: dict, now: float) -> list:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    cs, imgs = _containers_images(spec)
    return [d["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(d, now), cs, imgs,
            _selector(spec)]


_DEPLOY_COLS: list[Col] = [
    _NAME,
    ("Ready", "string", "Number of the pod with ready state", 0),
    ("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired "
     "template spec.", 0),
    ("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this "
     "deployment.", 0),
    _AGE,
    ("Containers", "string", "Names of each container in the template.", 1),
    ("Images", "string", "Images referenced by each container in the template.", 1),
    ("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the "
     "ones affected by this deployment.", 1),
]


def _rs_row(rs: dict, now: float) -> list:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    cs, imgs = _containers_images(spec)
    return [rs["metadata"]["name"], spec.get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), _age(rs, now), cs, imgs, _selector(spec)]


_RS_COLS: list[Col] = [
    _NAME,
    ("Desired", "integer", "Replicas is the number of desired replicas.", 0),
    ("Current", "integer", "Replicas is the most recently observed number of replicas.", 0),
    ("Ready", "integer", "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.", 0),
    _AGE,
    ("Containers", "string", "Names of each container in the template.", 1),
    ("Images", "string", "Images referenced by each container in the template.", 1),
    ("Selector", "string", "Selector is a label query over pods that should match the replica count.", 1),
]


def _sts_row(s: dict, now: float) -> list:
    spec, status = s.get("spec") or {}, s.get("status") or {}
    cs, imgs = _containers_images(spec)
    return [s["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}", _age(s, now),
            cs, imgs]


_STS_COLS: list[Col] = [
    _NAME,
    ("Ready", "string", "Number of the pod with ready state", 0),
    _AGE,
    ("Containers", "string", "Names of each container in the template.", 1),
    ("Images", "string", "Images referenced by each container in the template.", 1),
]


# ---------------------------------------------------------------------------------------------
# HPA


def format_hpa_metrics(specs: list[dict], statuses: list[dict]) -> str:
    """The TARGETS column (kubectl's formatHPAMetrics)."""
    if not specs:
        return "<none>"
    items: list[str] = []
    for i, spec in enumerate(specs):
        st = statuses[i] if i < len(statuses) else {}
        t = spec.get("type")
        if t == "External":
            tgt = _get(spec, "external", "target", default={})
            cur_src = _get(st, "external", "current")
            if tgt.get("averageValue") is not None:
                cur = _get(cur_src, "averageValue", default="<unknown>") if cur_src else "<unknown>"
                items.append(f"{cur}/{tgt['averageValue']} (avg)")
            else:
                cur = _get(cur_src, "value", default="0") if cur_src else "<unknown>"
                items.append(f"{cur}/{tgt.get('value', '0')}")
        elif t == "Pods":
            cur_src = _get(st, "pods", "current")
            cur = _get(cur_src, "averageValue", default="0") if cur_src else "<unknown>"
            items.append(f"{cur}/{_get(spec, 'pods', 'target', 'averageValue', default='0')}")
        elif t == "Object":
            tgt = _get(spec, "object", "target", default={})
            cur_src = _get(st, "object", "current")
            if tgt.get("averageValue") is not None:
                cur = _get(cur_src, "averageValue", default="<unknown>") if cur_src else "<unknown>"
                items.append(f"{cur}/{tgt['averageValue']} (avg)")
            else:
                cur = _get(cur_src, "value", default="0") if cur_src else "<unknown>"
                items.append(f"{cur}/{tgt.get('value', '0')}")
        elif t in ("Resource", "ContainerResource"):
            field = "resource" if t == "Resource" else "containerResource"
            src = spec.get(field) or {}
            tgt = src.get("target") or {}
            cur_src = _get(st, field, "current")
            if tgt.get("averageValue") is not None:
                cur = _get(cur_src, "averageValue", default="0") if cur_src else "<unknown>"
                items.append(f"{src.get('name')}: {cur}/{tgt['averageValue']}")
            else:
                cur = "<unknown>"
                if cur_src and cur_src.get("averageUtilization") is not None:
                    cur = f"{cur_src['averageUtilization']}%"
                target = f"{tgt['averageUtilization']}%" if tgt.get("averageUtilization") is not None else "<auto>"
                items.append(f"{src.get('name')}: {cur}/{target}")
        else:
            items.append("<unknown type>")
    if len(items) > 2:
        return ", ".join(items[:2]) + f" + {len(items) - 2} more..."
    return ", ".join(items)


def _hpa_row(h: dict, now: float) -> list:
    spec, status = h.get("spec") or {}, h.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    mn = spec.get("minReplicas")
    return [h["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}",
            format_hpa_metrics(spec.get("metrics") or [], status.get("currentMetrics") or []),
            "<unset>" if mn is None else mn, spec.get("maxReplicas", 0), status.get("currentReplicas", 0),
            _age(h, now)]


_HPA_COLS: list[Col] = [
    _NAME,
    ("Reference", "string", "reference to scaled resource; horizontal pod autoscaler will learn the current resource "
     "consumption and will set the desired number of pods by using its Scale subresource.", 0),
    ("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica "
     "count (the maximum replica count across all metrics will be used).", 0),
    ("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can "
     "scale down.", 0),
    ("MaxPods", "integer", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can "
     "scale up.", 0),
    ("Replicas", "integer", "currentReplicas is current number of replicas of pods managed by this autoscaler, as last "
     "seen by the autoscaler.", 0),
    _AGE,
]


# ---------------------------------------------------------------------------------------------
# the rest


def _event_row(e: dict, now: float) -> list:
    count = e.get("count") or _get(e, "series", "count") or 0
    first = e.get("firstTimestamp") or e.get("eventTime")  # neither: "<unknown>", as kubectl's printer says
    last = _get(e, "series", "lastObservedTime") or e.get("lastTimestamp") or first
    last_seen = _since(last, now)
    if count > 1:
        last_seen = f"{last_seen} (x{count} over {_since(first, now)})"
    io = e.get("involvedObject") or {}
    src = e.get("source") or {}
    source = src.get("component") or e.get("reportingComponent") or ""
    if src.get("host"):
        source = f"{source}, {src['host']}"
    return [last_seen, e.get("type", ""), e.get("reason", ""), f"{str(io.get('kind', '')).lower()}/{io.get('name', '')}",
            io.get("fieldPath", ""), source, e.get("message", "").strip(), _since(first, now), count,
            e["metadata"]["name"]]


_EVENT_COLS: list[Col] = [
    ("Last Seen", "string", "", 0), ("Type", "string", "Type of this event (Normal, Warning), new types could be added "
                                     "in the future", 0),
    ("Reason", "string", "This should be a short, machine understandable string that gives the reason for the "
     "transition into the object's current status.", 0),
    ("Object", "string", "The object that this event is about.", 0),
    ("Subobject", "string", "The subobject that this event is about.", 1),
    ("Source", "string", "The component reporting this event. Should be a short machine understandable string.", 1),
    ("Message", "string", "A human-readable description of the status of this operation.", 0),
    ("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
     1),
    ("Count", "string", "The number of times this event has occurred.", 1),
    ("Name", "string", "Name must be unique within a namespace.", 1),
]


def _svc_row(s: dict, now: float) -> list:
    spec = s.get("spec") or {}
    t = spec.get("type", "ClusterIP")
    ext = spec.get("externalIPs") or []
    lb = [i.get("ip") or i.get("hostname") for i in _get(s, "status", "loadBalancer", "ingress", default=[])]
    if t == "LoadBalancer":
        ext_s = ",".join(lb + ext) if (lb or ext) else "<pending>"
    elif t == "ExternalName":
        ext_s = spec.get("externalName", "")
    else:
        ext_s = ",".join(ext) if ext else "<none>"
    ports = []
    for p in spec.get("ports") or []:
        txt = f"{p.get('port')}/{p.get('protocol', 'TCP')}"
        if p.get("nodePort"):
            txt = f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}"
        ports.append(txt)
    sel = spec.get("selector") or {}
    sel_s = ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"
    return [s["metadata"]["name"], t, spec.get("clusterIP") or "<none>", ext_s, ",".join(ports) or "<none>",
            _age(s, now), sel_s]


_SVC_COLS: list[Col] = [
    _NAME,
    ("Type", "string", "type determines how the Service is exposed.", 0),
    ("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly.", 0),
    ("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept "
     "traffic for this service.", 0),
    ("Port(s)", "string", "The list of ports that are exposed by this service.", 0),
    _AGE,
    ("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.", 1),
]


def _ns_row(n: dict, now: float) -> list:
    return [n["metadata"]["name"], _get(n, "status", "phase", default=""), _age(n, now)]


_NS_COLS: list[Col] = [_NAME, ("Status", "string", "The status of the namespace", 0), _AGE]


def _lease_row(lease: dict, now: float) -> list:
    return [lease["metadata"]["name"], _get(lease, "spec", "holderIdentity", default="<unknown>"), _age(lease, now)]


_LEASE_COLS: list[Col] = [_NAME, ("Holder", "string", "Name of the Lease holder", 0), _AGE]


def _cm_row(c: dict, now: float) -> list:
    return [c["metadata"]["name"], len(c.get("data") or {}) + len(c.get("binaryData") or {}), _age(c, now)]


_CM_COLS: list[Col] = [_NAME, ("Data", "string", "", 0), _AGE]


def _secret_row(s: dict, now: float) -> list:
    return [s["metadata"]["name"], s.get("type", ""), len(s.get("data") or {}), _age(s, now)]


_SECRET_COLS: list[Col] = [_NAME, ("Type", "string", "", 0), ("Data", "string", "", 0), _AGE]


def _sa_row(s: dict, now: float) -> list:
    return [s["metadata"]["name"], len(s.get("secrets") or []), _age(s, now)]


_SA_COLS: list[Col] = [_NAME, ("Secrets", "string", "", 0), _AGE]


def _ep_row(e: dict, now: float) -> list:
    addrs = []
    for sub in e.get("subsets") or []:
        ports = [p.get("port") for p in sub.get("ports") or []] or [None]
        for a in sub.get("addresses") or []:
            for p in ports:
                addrs.append(f"{a.get('ip')}:{p}" if p is not None else str(a.get("ip")))
    shown = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
    return [e["metadata"]["name"], shown or "<none>", _age(e, now)]


_EP_COLS: list[Col] = [_NAME, ("Endpoints", "string", "", 0), _AGE]


def _apiservice_row(a: dict, now: float) -> list:
    svc = _get(a, "spec", "service")
    service = f"{svc.get('namespace')}/{svc.get('name')}" if svc else "Local"
    avail = "Unknown"
    for c in _get(a, "status", "conditions", default=[]):
        if c.get("type") == "Available":
            avail = c.get("status", "Unknown")
            if avail != "True" and c.get("reason"):
                avail = f"{avail} ({c['reason']})"
    return [a["metadata"]["name"], service, avail, _age(a, now)]


_APISERVICE_COLS: list[Col] = [_NAME, ("Service", "string", "The reference to the service that hosts this API "
                                       "endpoint.", 0),
                               ("Available", "string", "Whether this service is available.", 0), _AGE]


def _default_row(o: dict, now: float) -> list:
    return [o["metadata"]["name"], _age(o, now)]


_DEFAULT_COLS: list[Col] = [_NAME, _AGE]

# apiextensions-apiserver's CRD table (1.35+)
_CRD_COLS: list[Col] = [
    _NAME, ("Scope", "string", "Cluster/Namespaced", 0), ("Versions", "string", "Served versions", 0),
    ("Created At", "date", _AGE[2], 0), ("Group", "string", "API group", 1),
    ("Kind", "string", "CustomResource kind", 1), ("ShortNames", "string", "Short names", 1),
    ("Established", "boolean", "Established status", 1)]


def _crd_row(o: dict, now: float) -> list:
    spec = o.get("spec") or {}
    versions = sorted(v["name"] + ("(storage)" if v.get("storage") else "")
                      for v in spec.get("versions") or [] if v.get("served"))
    names = spec.get("names") or {}
    established = any(c.get("type") == "Established" and c.get("status") == "True"
                      for c in (o.get("status") or {}).get("conditions") or [])
    return [o["metadata"]["name"], spec.get("scope", ""), ",".join(versions), o["metadata"].get("creationTimestamp"),
            spec.get("group", ""), names.get("kind", ""), ",".join(names.get("shortNames") or []), established]


# ---------------------------------------------------------------------------------------------
# custom resources: the CRD's additionalPrinterColumns (simple JSONPaths), Age when it has none

Printer = tuple[list[Col], Callable[[dict, float], list]]
_CUSTOM_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", _AGE[2])


def _cell(col: PrinterColumn, obj: dict, now: float) -> Any:
    """A cell as the CRD table convertor fills it (None, shown as <none>, when absent or mistyped)."""
    value, found = value_at(obj, col.json_path)
    if not found or value is None:
        return None
    if col.type == "string":
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    if col.type == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if col.type == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if col.type == "boolean" and isinstance(value, bool):
        return value
    if col.type == "date" and isinstance(value, str):
        return _since(value, now) if value else None
    return None


def custom_printer(columns: Sequence[PrinterColumn]) -> Printer:
    cols = list(columns) or [_CUSTOM_AGE]

    def row(o: dict, now: float) -> list:
        return [o["metadata"]["name"], *(_cell(c, o, now) for c in cols)]
    return [_NAME, *((c.name, c.type, c.description, c.priority) for c in cols)], row

# RBAC (kubectl's printers for roles and bindings)
_ROLE_COLS: list[Col] = [_NAME, ("Created At", "date", "Time when the role was created", 0)]
_BINDING_COLS: list[Col] = [
    _NAME, ("Role", "string", "Role", 0), _AGE, ("Users", "string", "Users in the roleBinding", 1),
    ("Groups", "string", "Groups in the roleBinding", 1),
    ("ServiceAccounts", "string", "ServiceAccounts in the roleBinding", 1)]


def _role_row(o: dict, now: float) -> list:
    return [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]


def _binding_row(o: dict, now: float) -> list:
    ref = o.get("roleRef") or {}
    users, groups, sas = [], [], []
    for s in o.get("subjects") or []:
        if s.get("kind") == "User":
            users.append(s.get("name", ""))
        elif s.get("kind") == "Group":
            groups.append(s.get("name", ""))
        elif s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
    return [o["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(o, now), ", ".join(users),
            ", ".join(groups), ", ".join(sas)]


PRINTERS: dict[str, tuple[list[Col], Callable[[dict, float], list]]] = {
    "roles.rbac.authorization.k8s.io": (_ROLE_COLS, _role_row),
    "clusterroles.rbac.authorization.k8s.io": (_ROLE_COLS, _role_row),
    "rolebindings.rbac.authorization.k8s.io": (_BINDING_COLS, _binding_row),
    "clusterrolebindings.rbac.authorization.k8s.io": (_BINDING_COLS, _binding_row),
    "pods": (_POD_COLS, _pod_row),
    "nodes": (_NODE_COLS, _node_row),
    "deployments.apps": (_DEPLOY_COLS, _deploy_row),
    "replicasets.apps": (_RS_COLS, _rs_row),
    "statefulsets.apps": (_STS_COLS, _sts_row),
    "horizontalpodautoscalers.autoscaling": (_HPA_COLS, _hpa_row),
    "events": (_EVENT_COLS, _event_row),
    "services": (_SVC_COLS, _svc_row),
    "namespaces": (_NS_COLS, _ns_row),
    "leases.coordination.k8s.io": (_LEASE_COLS, _lease_row),
    "configmaps": (_CM_COLS, _cm_row),
    "secrets": (_SECRET_COLS, _secret_row),
    "serviceaccounts": (_SA_COLS, _sa_row),
    "endpoints": (_EP_COLS, _ep_row),
    "apiservices.apiregistration.k8s.io": (_APISERVICE_COLS, _apiservice_row),
    "customresourcedefinitions.apiextensions.k8s.io": (_CRD_COLS, _crd_row),
}


def column_definitions(resource: str, printer: Printer | None = None) -> list[dict[str, Any]]:
    cols = (printer or PRINTERS.get(resource, (_DEFAULT_COLS, _default_row)))[0]
    return [{"name": n, "type": t, "format": "name" if n == "Name" and i == 0 else "", "description": d,
             "priority": p} for i, (n, t, d, p) in enumerate(cols)]


def partial_metadata(obj: dict) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def table(resource: str, objs: list[dict], *, include_object: str = "Metadata", headers: bool = True,
          list_meta: dict | None = None, now: float | None = None, external: Callable[[dict], dict] | None = None,
          printer: Printer | None = None) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of ``objs``; ``include_object`` is None, Metadata or Object;
    ``printer`` (columns, row function) overrides the built-in printer of ``resource``."""
    now = time.time() if now is None else now
    row_fn = (printer or PRINTERS.get(resource, (_DEFAULT_COLS, _default_row)))[1]
    rows = []
    for o in objs:
        row: dict[str, Any] = {"cells": row_fn(o, now)}
        if include_object == "Object":
            row["object"] = external(o) if external else o
        elif include_object != "None":
            row["object"] = partial_metadata(o)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta or {},
        "columnDefinitions": column_definitions(resource, printer) if headers else [],
        "rows": rows,
    }

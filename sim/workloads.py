"""Workload controllers of the emulated cluster, as kube-controller-manager runs them:
Deployment → ReplicaSet (``pod-template-hash`` label, ownerReferences, rolling update with
maxSurge/maxUnavailable or Recreate, revision annotations, status and conditions) → Pods, and
StatefulSet → pods ``<name>-0 .. <name>-N-1`` (OrderedReady or Parallel).

Controllers react to store change callbacks through a deduplicating work queue processed on the
event loop (never inside the callback, so writes don't nest), and re-check on timers from the
cluster clock (minReadySeconds).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Hashable
from typing import Any

import orjson

from autoscaler.k8s import status as st
from autoscaler.k8s.timefmt import format_time, parse_time
from sim.clock import Clock

log = logging.getLogger(__name__)

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


class WorkQueue:
    """Deduplicating queue of keys processed in batches on the event loop."""

    def __init__(self, process: Callable[[Any], None], clock: Clock, name: str) -> None:
        self.process = process
        self.clock = clock
        self.name = name
        self._pending: dict[Hashable, None] = {}
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: dict[Hashable, Any] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add(self, key: Hashable) -> None:
        self._pending[key] = None
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def add_after(self, key: Hashable, delay: float) -> None:
        old = self._timers.get(key)
        if old is not None and not old.cancelled and old.when <= self.clock.now() + delay:
            return
        if old is not None:
            old.cancel()
        self._timers[key] = self.clock.call_later(delay, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _run(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, {}
        for key in batch:
            try:
                self.process(key)
            except st.ApiError as exc:
                if exc.code == 409:
                    self.add(key)
                else:
                    log.warning("%s: sync %s failed: %s", self.name, key, exc.message)
            except Exception:
                log.exception("%s: sync %s failed", self.name, key)

    def stop(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        self._pending.clear()
        self._loop = None


# --- pod helpers ------------------------------------------------------------------------------


def controller_uid(obj: dict) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return ref.get("uid")
    return None


def owner_ref(owner: dict, kind: str) -> dict:
    md = owner["metadata"]
    return {"apiVersion": "apps/v1", "kind": kind, "name": md["name"], "uid": md["uid"],
            "controller": True, "blockOwnerDeletion": True}


def condition(obj: dict, ctype: str) -> dict | None:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return c
    return None


def pod_ready(pod: dict) -> bool:
    c = condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def pod_active(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
        "Succeeded", "Failed")


def pod_available(pod: dict, min_ready: int, now: float) -> bool:
    c = condition(pod, "Ready")
    if not c or c.get("status") != "True":
        return False
    if min_ready <= 0:
        return True
    return parse_time(c.get("lastTransitionTime") or format_time(now)) + min_ready <= now


class PodIndex:
    """Pods by controlling owner uid, kept current from store callbacks (no list scans)."""

    def __init__(self) -> None:
        self.by_owner: dict[str, dict[tuple[str, str], dict]] = {}

    def on_event(self, etype: str, obj: dict, old: dict | None) -> None:
        md = obj["metadata"]
        key = (md.get("namespace", ""), md["name"])
        if old is not None:
            ouid = controller_uid(old)
            if ouid and ouid != controller_uid(obj):
                self.by_owner.get(ouid, {}).pop(key, None)
        uid = controller_uid(obj)
        if not uid:
            return
        if etype == "DELETED":
            pods = self.by_owner.get(uid)
            if pods is not None:
                pods.pop(key, None)
                if not pods:
                    del self.by_owner[uid]
        else:
            self.by_owner.setdefault(uid, {})[key] = obj

    def owned(self, uid: str) -> list[dict]:
        return list(self.by_owner.get(uid, {}).values())


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: dict, collision_count: int = 0) -> str:
    """Like ``controller.ComputeHash``: fnv32a of the template (and collision count), rendered
    with the safe alphabet so it never spells words."""
    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += str(collision_count).encode()
    return "".join(_SAFE[b % len(_SAFE)] for b in str(_fnv32a(data)).encode())


def _resolve(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        frac = int(value[:-1]) * total / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(value or 0)


def surge_unavailable(d: dict) -> tuple[int, int]:
    spec = d["spec"]
    replicas = spec.get("replicas", 1)
    strat = spec.get("strategy") or {}
    if strat.get("type") == "Recreate":
        return 0, 0
    ru = strat.get("rollingUpdate") or {}
    surge = _resolve(ru.get("maxSurge", "25%"), replicas, True)
    unavailable = _resolve(ru.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def set_condition(conds: list[dict], ctype: str, status: str, reason: str, message: str, now: str,
                  *, update_time: bool = True) -> list[dict]:
    """Upsert a condition the way workload controllers do: transition time only moves when the
    status flips; nothing changes when status and reason are the same."""
    out = [dict(c) for c in conds]
    for c in out:
        if c.get("type") != ctype:
            continue
        if c.get("status") == status and c.get("reason") == reason:
            return out
        if c.get("status") != status:
            c["lastTransitionTime"] = now
        c.update(status=status, reason=reason, message=message)
        if update_time:
            c["lastUpdateTime"] = now
        return out
    new = {"type": ctype, "status": status}
    if update_time:
        new["lastUpdateTime"] = now
    new.update(lastTransitionTime=now, reason=reason, message=message)
    out.append(new)
    return out


# --- controllers ------------------------------------------------------------------------------


class WorkloadControllers:
    """Deployment, ReplicaSet and StatefulSet controllers over one ObjectStore."""

    def __init__(self, store: Any, clock: Clock, *, burst: int = 500) -> None:
        self.store = store
        self.clock = clock
        self.burst = burst
        self.pods = PodIndex()
        self.deployments = WorkQueue(self.sync_deployment, clock, "deployment")
        self.replicasets = WorkQueue(self.sync_replicaset, clock, "replicaset")
        self.statefulsets = WorkQueue(self.sync_statefulset, clock, "statefulset")
        self._unsubscribe: list[Callable[[], None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for q in (self.deployments, self.replicasets, self.statefulsets):
            q.bind(loop)
        s = self.store
        for pod in s.list("pods")[0]:
            self.pods.on_event("ADDED", pod, None)
        self._unsubscribe += [
            s.subscribe("pods", self._on_pod),
            s.subscribe("deployments.apps", self._on_deployment),
            s.subscribe("replicasets.apps", self._on_replicaset),
            s.subscribe("statefulsets.apps", self._on_statefulset),
        ]
        for d in s.list("deployments.apps")[0]:
            self.deployments.add((d["metadata"]["namespace"], d["metadata"]["name"]))
        for rs in s.list("replicasets.apps")[0]:
            self.replicasets.add((rs["metadata"]["namespace"], rs["metadata"]["name"]))
        for ss in s.list("statefulsets.apps")[0]:
            self.statefulsets.add((ss["metadata"]["namespace"], ss["metadata"]["name"]))

    def stop(self) -> None:
        for u in self._unsubscribe:
            u()
        self._unsubscribe.clear()
        for q in (self.deployments, self.replicasets, self.statefulsets):
            q.stop()

    # event routing

    def _owner(self, obj: dict) -> tuple[str, str, str] | None:
        for ref in obj["metadata"].get("ownerReferences") or ():
            if ref.get("controller"):
                return ref.get("kind", ""), obj["metadata"].get("namespace", ""), ref.get("name", "")
        return None

    def _on_pod(self, etype: str, obj: dict, old: dict | None) -> None:
        self.pods.on_event(etype, obj, old)
        owner = self._owner(obj)
        if owner is None:
            return
        kind, ns, name = owner
        if kind == "ReplicaSet":
            self.replicasets.add((ns, name))
        elif kind == "StatefulSet":
            self.statefulsets.add((ns, name))

    def _on_deployment(self, etype: str, obj: dict, old: dict | None) -> None:
        if old is not None and etype == "MODIFIED" and old.get("spec") == obj.get("spec") and \
                old["metadata"].get("deletionTimestamp") == obj["metadata"].get("deletionTimestamp"):
            return  # our own status write
        if etype != "DELETED":
            self.deployments.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    def _on_replicaset(self, etype: str, obj: dict, old: dict | None) -> None:
        md = obj["metadata"]
        if etype != "DELETED" and not (old is not None and old.get("spec") == obj.get("spec")):
            self.replicasets.add((md["namespace"], md["name"]))
        owner = self._owner(obj)
        if owner and owner[0] == "Deployment":
            self.deployments.add((owner[1], owner[2]))

    def _on_statefulset(self, etype: str, obj: dict, old: dict | None) -> None:
        if etype == "DELETED" or (old is not None and old.get("spec") == obj.get("spec")):
            return
        self.statefulsets.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    # --- ReplicaSet ----------------------------------------------------------------------------

    def sync_replicaset(self, key: tuple[str, str]) -> None:
        ns, name = key
        rs = self.store.try_get("replicasets.apps", ns, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        uid = rs["metadata"]["uid"]
        spec = rs["spec"]
        want = int(spec.get("replicas", 1))
        pods = self.pods.owned(uid)
        active = [p for p in pods if pod_active(p)]
        diff = len(active) - want
        if diff < 0:
            tmpl = spec.get("template") or {}
            for _ in range(min(-diff, self.burst)):
                pod = {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {
                        "generateName": f"{name}-", "namespace": ns,
                        "labels": dict((tmpl.get("metadata") or {}).get("labels") or {}),
                        "annotations": dict((tmpl.get("metadata") or {}).get("annotations") or {}) or None,
                        "ownerReferences": [owner_ref(rs, "ReplicaSet")],
                    },
                    "spec": orjson.loads(orjson.dumps(tmpl.get("spec") or {})),
                }
                if pod["metadata"]["annotations"] is None:
                    del pod["metadata"]["annotations"]
                self.store.create("pods", pod, owned=True)
            if -diff > self.burst:
                self.replicasets.add(key)
        elif diff > 0:
            for pod in self.rank_for_deletion(active)[:diff]:
                try:
                    self.store.delete("pods", ns, pod["metadata"]["name"])
                except st.ApiError as exc:
                    if exc.code != 404:
                        raise
        self._replicaset_status(key)

    def rank_for_deletion(self, pods: list[dict]) -> list[dict]:
        """Upstream's scale-down preference: unscheduled, pending, not ready, doubled-up on a node,
        ready for less time, more restarts, newer — first."""
        per_node: dict[str, int] = {}
        for p in pods:
            n = p["spec"].get("nodeName") or ""
            per_node[n] = per_node.get(n, 0) + 1
        phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}

        def key(p: dict) -> tuple:
            status = p.get("status") or {}
            node = p["spec"].get("nodeName") or ""
            ready_c = condition(p, "Ready")
            ready = bool(ready_c and ready_c.get("status") == "True")
            ready_since = parse_time(ready_c["lastTransitionTime"]) if ready and ready_c.get("lastTransitionTime") else 0
            restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or ())
            cost = int(((p["metadata"].get("annotations") or {}).get("controller.kubernetes.io/pod-deletion-cost")) or 0)
            created = parse_time(p["metadata"].get("creationTimestamp") or "1970-01-01T00:00:00Z")
            return (bool(node), phase_rank.get(status.get("phase", "Pending"), 0), ready, cost,
                    -per_node.get(node, 0), -ready_since, -restarts, -created)

        return sorted(pods, key=key)

    def _replicaset_status(self, key: tuple[str, str]) -> None:
        ns, name = key
        rs = self.store.try_get("replicasets.apps", ns, name)
        if rs is None:
            return
        now = self.clock.now()
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        active = [p for p in self.pods.owned(rs["metadata"]["uid"]) if pod_active(p)]
        labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        ready = [p for p in active if pod_ready(p)]
        available = [p for p in ready if pod_available(p, min_ready, now)]
        if len(available) < len(ready) and min_ready > 0:
            self.replicasets.add_after(key, min_ready)
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        old = rs.get("status") or {}
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        if old != status:
            self.store.mutate("replicasets.apps", ns, name, lambda o: o.__setitem__("status", status),
                              subresource="status")

    # --- Deployment ----------------------------------------------------------------------------

    def _owned_replicasets(self, d: dict) -> list[dict]:
        uid = d["metadata"]["uid"]
        items, _ = self.store.list("replicasets.apps", d["metadata"]["namespace"])
        return [rs for rs in items if controller_uid(rs) == uid]

    def _scale_rs(self, rs: dict, replicas: int, d: dict) -> dict:
        surge, _ = surge_unavailable(d)
        want_ann = {DESIRED: str(d["spec"].get("replicas", 1)), MAX_REPLICAS: str(d["spec"].get("replicas", 1) + surge)}
        ann = rs["metadata"].get("annotations") or {}
        if rs["spec"].get("replicas") == replicas and all(ann.get(k) == v for k, v in want_ann.items()):
            return rs

        def fn(o: dict) -> None:
            o["spec"]["replicas"] = replicas
            o["metadata"].setdefault("annotations", {}).update(want_ann)

        return self.store.mutate("replicasets.apps", rs["metadata"]["namespace"], rs["metadata"]["name"], fn)

    def sync_deployment(self, key: tuple[str, str]) -> None:
        ns, name = key
        d = self.store.try_get("deployments.apps", ns, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        spec = d["spec"]
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        collision = int((d.get("status") or {}).get("collisionCount") or 0)
        h = template_hash(template, collision)
        rss = self._owned_replicasets(d)
        new_rs = next((rs for rs in rss if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == h), None)
        olds = sorted((rs for rs in rss if rs is not new_rs),
                      key=lambda rs: (rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"]))
        created = False
        revision = max([int((rs["metadata"].get("annotations") or {}).get(REVISION, 0)) for rs in rss] + [0])
        if spec.get("paused"):
            self._deployment_status(d, new_rs, rss, created=False)
            return
        surge, unavailable = surge_unavailable(d)
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        if new_rs is None:
            active_olds = any(rs["spec"].get("replicas", 0) > 0 for rs in olds)
            initial = replicas if not active_olds else 0
            if active_olds and not recreate:
                current = sum(rs["spec"].get("replicas", 0) for rs in olds)
                initial = max(0, min(replicas, replicas + surge - current))
            new_rs = self._create_rs(d, h, initial, revision + 1 if rss else 1, surge)
            created = True
            revision = int(new_rs["metadata"]["annotations"][REVISION])
        elif int((new_rs["metadata"].get("annotations") or {}).get(REVISION, 0)) < revision:
            new_rs = self.store.mutate(
                "replicasets.apps", ns, new_rs["metadata"]["name"],
                lambda o: o["metadata"].setdefault("annotations", {}).__setitem__(REVISION, str(revision + 1)))
            revision += 1
        else:
            revision = int((new_rs["metadata"].get("annotations") or {}).get(REVISION, revision))
        if (d["metadata"].get("annotations") or {}).get(REVISION) != str(revision):
            d = self.store.mutate("deployments.apps", ns, name, lambda o: o["metadata"].setdefault(
                "annotations", {}).__setitem__(REVISION, str(revision)))
        if recreate:
            if any(rs["spec"].get("replicas", 0) > 0 for rs in olds):
                for rs in olds:
                    self._scale_rs(rs, 0, d)
            elif not any((rs.get("status") or {}).get("replicas", 0) > 0 for rs in olds):
                new_rs = self._scale_rs(new_rs, replicas, d)
        else:
            new_rs = self._rolling(d, new_rs, olds, replicas, surge, unavailable)
        self._cleanup(d, olds)
        self._deployment_status(d, new_rs, [new_rs, *olds], created=created)

    def _create_rs(self, d: dict, h: str, replicas: int, revision: int, surge: int) -> dict:
        md, spec = d["metadata"], d["spec"]
        tmpl = orjson.loads(orjson.dumps(spec.get("template") or {}))
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        sel = orjson.loads(orjson.dumps(spec.get("selector") or {}))
        sel.setdefault("matchLabels", {})[HASH_LABEL] = h
        rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": f"{md['name']}-{h}", "namespace": md["namespace"],
                "labels": dict(tmpl["metadata"]["labels"]),
                "annotations": {DESIRED: str(spec.get("replicas", 1)),
                                MAX_REPLICAS: str(spec.get("replicas", 1) + surge), REVISION: str(revision)},
                "ownerReferences": [owner_ref(d, "Deployment")],
            },
            "spec": {"replicas": replicas, "minReadySeconds": spec.get("minReadySeconds", 0) or 0,
                     "selector": sel, "template": tmpl},
        }
        if not rs["spec"]["minReadySeconds"]:
            del rs["spec"]["minReadySeconds"]
        try:
            return self.store.create("replicasets.apps", rs, owned=True)
        except st.ApiError as exc:
            if exc.code != 409:
                raise
            # hash collision with an RS of another template: bump collisionCount (upstream behaviour)
            self.store.mutate("deployments.apps", md["namespace"], md["name"], lambda o: o.setdefault(
                "status", {}).__setitem__("collisionCount", int(o["status"].get("collisionCount") or 0) + 1),
                subresource="status")
            raise

    def _rolling(self, d: dict, new_rs: dict, olds: list[dict], replicas: int, surge: int, unavailable: int) -> dict:
        cur_new = new_rs["spec"].get("replicas", 0)
        total = cur_new + sum(rs["spec"].get("replicas", 0) for rs in olds)
        if not any(rs["spec"].get("replicas", 0) for rs in olds):
            return self._scale_rs(new_rs, replicas, d)
        # reconcile the new ReplicaSet (NewRSNewReplicas)
        if cur_new > replicas:
            new_rs = self._scale_rs(new_rs, replicas, d)
        elif cur_new < replicas:
            max_total = replicas + surge
            if total < max_total:
                new_rs = self._scale_rs(new_rs, cur_new + min(max_total - total, replicas - cur_new), d)
        # reconcile the old ones
        all_count = new_rs["spec"].get("replicas", 0) + sum(rs["spec"].get("replicas", 0) for rs in olds)
        min_available = replicas - unavailable
        new_unavailable = new_rs["spec"].get("replicas", 0) - (new_rs.get("status") or {}).get("availableReplicas", 0)
        max_down = all_count - min_available - new_unavailable
        if max_down <= 0:
            return new_rs
        cleaned = 0
        olds = list(olds)
        for i, rs in enumerate(olds):  # unhealthy replicas first
            sp, av = rs["spec"].get("replicas", 0), (rs.get("status") or {}).get("availableReplicas", 0)
            if cleaned >= max_down or sp == av:
                continue
            down = min(max_down - cleaned, sp - av)
            olds[i] = self._scale_rs(rs, sp - down, d)
            cleaned += down
        available = sum((rs.get("status") or {}).get("availableReplicas", 0) for rs in [new_rs, *olds])
        budget = min(available - min_available, max_down - cleaned)
        for rs in olds:
            if budget <= 0:
                break
            sp = rs["spec"].get("replicas", 0)
            down = min(sp, budget)
            if down > 0:
                self._scale_rs(rs, sp - down, d)
                budget -= down
        return new_rs

    def _cleanup(self, d: dict, olds: list[dict]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        dead = [rs for rs in olds if rs["spec"].get("replicas", 0) == 0 and not (rs.get("status") or {}).get("replicas")]
        for rs in dead[: max(0, len(dead) - limit)]:
            try:
                self.store.delete("replicasets.apps", rs["metadata"]["namespace"], rs["metadata"]["name"])
            except st.ApiError:
                pass

    def _deployment_status(self, d: dict, new_rs: dict | None, rss: list[dict], *, created: bool) -> None:
        md, spec = d["metadata"], d["spec"]
        ns, name = md["namespace"], md["name"]
        rss = [self.store.try_get("replicasets.apps", ns, rs["metadata"]["name"]) or rs for rs in rss]
        new_rs = next((rs for rs in rss if new_rs and rs["metadata"]["name"] == new_rs["metadata"]["name"]), None)
        replicas = int(spec.get("replicas", 1))
        _, unavailable = surge_unavailable(d)

        def total(field: str, items: list[dict]) -> int:
            return sum((rs.get("status") or {}).get(field, 0) for rs in items)

        spec_total = sum(rs["spec"].get("replicas", 0) for rs in rss)
        available = total("availableReplicas", rss)
        status: dict[str, Any] = {
            "observedGeneration": md.get("generation", 1),
            "replicas": total("replicas", rss),
            "updatedReplicas": total("replicas", [new_rs]) if new_rs else 0,
            "readyReplicas": total("readyReplicas", rss),
            "availableReplicas": available,
            "unavailableReplicas": max(0, spec_total - available),
        }
        old = d.get("status") or {}
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        now = format_time(self.clock.now())
        conds = list(old.get("conditions") or [])
        if available >= replicas - unavailable:
            conds = set_condition(conds, "Available", "True", "MinimumReplicasAvailable",
                                  "Deployment has minimum availability.", now)
        else:
            conds = set_condition(conds, "Available", "False", "MinimumReplicasUnavailable",
                                  "Deployment does not have minimum availability.", now)
        if new_rs is not None:
            rs_name = new_rs["metadata"]["name"]
            complete = (status["updatedReplicas"] == replicas and status["replicas"] == replicas
                        and available == replicas)
            if complete:
                conds = set_condition(conds, "Progressing", "True", "NewReplicaSetAvailable",
                                      f'ReplicaSet "{rs_name}" has successfully progressed.', now)
            elif created:
                conds = set_condition(conds, "Progressing", "True", "NewReplicaSetCreated",
                                      f'Created new replica set "{rs_name}"', now)
            elif not any(c["type"] == "Progressing" for c in conds):
                conds = set_condition(conds, "Progressing", "True", "FoundNewReplicaSet",
                                      f'Found new replica set "{rs_name}"', now)
            else:
                conds = set_condition(conds, "Progressing", "True", "ReplicaSetUpdated",
                                      f'ReplicaSet "{rs_name}" is progressing.', now)
        conds.sort(key=lambda c: {"Available": 0, "Progressing": 1}.get(c["type"], 2))
        status["conditions"] = conds
        status = {k: v for k, v in status.items() if v or k in ("observedGeneration", "replicas", "conditions")}
        if status != old:
            self.store.mutate("deployments.apps", ns, name, lambda o: o.__setitem__("status", status),
                              subresource="status")

    # --- StatefulSet ---------------------------------------------------------------------------

    def sync_statefulset(self, key: tuple[str, str]) -> None:
        ns, name = key
        ss = self.store.try_get("statefulsets.apps", ns, name)
        if ss is None or ss["metadata"].get("deletionTimestamp"):
            return
        spec = ss["spec"]
        replicas = int(spec.get("replicas", 1))
        parallel = spec.get("podManagementPolicy") == "Parallel"
        tmpl = spec.get("template") or {}
        revision = f"{name}-{template_hash(tmpl)}"
        pods = {p["metadata"]["name"]: p for p in self.pods.owned(ss["metadata"]["uid"])}
        for i in range(replicas):
            pname = f"{name}-{i}"
            pod = pods.get(pname)
            if pod is None:
                labels = dict((tmpl.get("metadata") or {}).get("labels") or {})
                labels.update({"controller-revision-hash": revision, "statefulset.kubernetes.io/pod-name": pname,
                               "apps.kubernetes.io/pod-index": str(i)})
                pspec = orjson.loads(orjson.dumps(tmpl.get("spec") or {}))
                pspec["hostname"] = pname
                if spec.get("serviceName"):
                    pspec["subdomain"] = spec["serviceName"]
                meta: dict[str, Any] = {"name": pname, "namespace": ns, "labels": labels,
                                        "ownerReferences": [owner_ref(ss, "StatefulSet")]}
                if (tmpl.get("metadata") or {}).get("annotations"):
                    meta["annotations"] = dict(tmpl["metadata"]["annotations"])
                self.store.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pspec},
                                  owned=True)
                if not parallel:
                    break
            elif not parallel and not (pod_active(pod) and pod_ready(pod)):
                break
        extra = sorted((p for n, p in pods.items() if _ordinal(n, name) >= replicas),
                       key=lambda p: -_ordinal(p["metadata"]["name"], name))
        if extra:
            lower_ok = all(pod_ready(pods[f"{name}-{i}"]) for i in range(replicas) if f"{name}-{i}" in pods)
            for p in extra:
                if p["metadata"].get("deletionTimestamp"):
                    if not parallel:
                        break
                    continue
                if not parallel and not lower_ok:
                    break
                self.store.delete("pods", ns, p["metadata"]["name"])
                if not parallel:
                    break
        self._statefulset_status(ss, revision)

    def _statefulset_status(self, ss: dict, revision: str) -> None:
        ns, name = ss["metadata"]["namespace"], ss["metadata"]["name"]
        now = self.clock.now()
        pods = [p for p in self.pods.owned(ss["metadata"]["uid"]) if not p["metadata"].get("deletionTimestamp")]
        min_ready = int(ss["spec"].get("minReadySeconds") or 0)
        updated = [p for p in pods if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == revision]
        status = {
            "observedGeneration": ss["metadata"].get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": sum(1 for p in pods if pod_ready(p)),
            "currentReplicas": len(updated),
            "updatedReplicas": len(updated),
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
            "availableReplicas": sum(1 for p in pods if pod_available(p, min_ready, now)),
        }
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration", "collisionCount",
                                                                 "availableReplicas")}
        if (ss.get("status") or {}) != status:
            self.store.mutate("statefulsets.apps", ns, name, lambda o: o.__setitem__("status", status),
                              subresource="status")


def _ordinal(pod_name: str, set_name: str) -> int:
    suffix = pod_name[len(set_name) + 1:]
    return int(suffix) if suffix.isdigit() else -1


class EventRecorder:
    """Writes core/v1 Events the way client-go's recorder does (one object per occurrence,
    name ``<object>.<hex>``). Off for large clusters, where they would only cost memory."""

    def __init__(self, store: Any, clock: Clock, *, enabled: bool = True) -> None:
        self.store = store
        self.clock = clock
        self.enabled = enabled
        self._seq = 0

    def emit(self, obj: dict, etype: str, reason: str, message: str, *, component: str,
             host: str = "", action: str = "") -> None:
        if not self.enabled:
            return
        md = obj["metadata"]
        now = self.clock.now()
        self._seq += 1
        stamp = format_time(now)
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{md['name']}.{int(now * 1e9) + self._seq:x}", "namespace": md.get("namespace") or "default"},
            "involvedObject": {"kind": obj.get("kind", "Pod"), "namespace": md.get("namespace"), "name": md["name"],
                               "uid": md.get("uid"), "apiVersion": obj.get("apiVersion", "v1"),
                               "resourceVersion": md.get("resourceVersion")},
            "reason": reason, "message": message, "type": etype, "count": 1,
            "source": {"component": component, **({"host": host} if host else {})},
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "reportingComponent": component, "reportingInstance": host or component,
        }
        if action:
            event["action"] = action
        try:
            self.store.create("events", event, owned=True)
        except st.ApiError as exc:
            log.debug("event not recorded: %s", exc.message)

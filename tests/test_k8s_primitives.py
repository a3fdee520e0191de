"""Quantities, selectors, times and Status errors as apimachinery renders and parses them."""

from decimal import Decimal

import pytest

from autoscaler.k8s import quantity, selectors, status, timefmt


@pytest.mark.parametrize(
    ("nanocores", "text"),
    [(3142466, "3142466n"), (10500, "10500n"), (1000, "1u"), (20_000_000, "20m"), (200_000_000, "200m"),
     (1_500_000_000, "1500m"), (2_000_000_000, "2"), (0, "0")],
)
def test_cpu_usage_strings_match_metrics_server(nanocores: int, text: str) -> None:
    assert quantity.format_cpu_nanocores(nanocores) == text


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [(12533760, "12240Ki"), (1616273408, "1578392Ki"), (1048576, "1Mi"), (2048000, "2000Ki"),
     (12533761, "12533761"), (512, "512"), (1000, "1k"), (1020, "1020"), (0, "0")],
)
def test_memory_usage_strings_match_metrics_server(num_bytes: int, text: str) -> None:
    assert quantity.format_memory_bytes(num_bytes) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [("250m", Decimal("0.25")), ("1.5Gi", Decimal(1610612736)), ("1e3", Decimal(1000)), ("2", Decimal(2)),
     ("100Mi", Decimal(104857600)), ("3142466n", Decimal("0.003142466")), (".5", Decimal("0.5")), ("1k", Decimal(1000))],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert quantity.parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["", "1.2.3", "m", "1Zi", "abc", "1 Gi"])
def test_parse_quantity_rejects_garbage(bad: str) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.parse_quantity(bad)


def test_milli_value_rounds_up_like_go() -> None:
    assert quantity.milli_value("100m") == 100
    assert quantity.milli_value("0.0001") == 1  # Go's MilliValue rounds toward +inf
    assert quantity.milli_value("1.5") == 1500
    assert quantity.value("1500m") == 2
    assert quantity.format_milli(1500) == "1500m"
    assert quantity.format_milli(2000) == "2"


def test_label_selector_full_syntax_and_canonical_form() -> None:
    sel = selectors.parse_label_selector("tier in (b,a), app=web,!canary,env!=prod,x>3,has")
    assert str(sel) == "app=web,!canary,env!=prod,has,tier in (a,b),x>3"
    assert sel.matches({"app": "web", "tier": "a", "x": "4", "has": ""})
    assert not sel.matches({"app": "web", "tier": "a", "x": "4", "has": "", "canary": "1"})
    assert not sel.matches({"app": "web", "tier": "c", "x": "4", "has": ""})
    assert not sel.matches({"app": "web", "tier": "a", "x": "3", "has": ""})
    # != and notin match objects without the key, as in Kubernetes.
    assert selectors.parse_label_selector("env!=prod").matches({})
    assert selectors.parse_label_selector("env notin (prod)").matches({})
    assert selectors.parse_label_selector("").empty


@pytest.mark.parametrize("bad", ["a b", "a in b", "=x", "a in ()", "a,", "a=b=c", "-bad-=1", "a in (x", "a>b"])
def test_label_selector_errors(bad: str) -> None:
    with pytest.raises(selectors.SelectorError):
        selectors.parse_label_selector(bad)


def test_selector_from_object_nil_and_empty() -> None:
    assert not selectors.selector_from_object(None).matches({"a": "b"})
    assert selectors.selector_from_object({}).matches({"a": "b"})
    sel = selectors.selector_from_object(
        {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}
    )
    assert str(sel) == "app=web,tier in (a)"
    with pytest.raises(selectors.SelectorError):
        selectors.selector_from_object({"matchExpressions": [{"key": "a", "operator": "Near"}]})


def test_field_selector_with_escapes() -> None:
    sel = selectors.parse_field_selector(r"metadata.name=a\,b,status.phase!=Running")
    assert sel.matches({"metadata.name": "a,b", "status.phase": "Pending"})
    assert not sel.matches({"metadata.name": "a,b", "status.phase": "Running"})
    assert sel.fields() == {"metadata.name", "status.phase"}
    with pytest.raises(selectors.SelectorError):
        selectors.parse_field_selector("metadata.name")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(15, "15s"), (15.953, "15.953s"), (60, "1m0s"), (75.5, "1m15.5s"), (3600, "1h0m0s"), (0.5, "500ms"),
     (0.0000015, "1.5µs"), (0, "0s")],
)
def test_go_duration_format_and_parse(seconds: float, text: str) -> None:
    assert timefmt.format_duration(seconds) == text
    assert timefmt.parse_duration(text) == pytest.approx(seconds)


def test_times_truncate_to_whole_seconds() -> None:
    assert timefmt.format_time(1633253812.125) == "2021-10-03T09:36:52Z"
    assert timefmt.parse_time("2021-10-03T10:36:52.5+01:00") == pytest.approx(1633253812.5)
    assert timefmt.parse_time(timefmt.ZERO_TIME) < -6e10
    with pytest.raises(ValueError):
        timefmt.parse_time("yesterday")


def test_status_objects_carry_kube_apiserver_wording() -> None:
    err = status.not_found("deployments", "web", "apps")
    assert err.status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'deployments.apps "web" not found', "reason": "NotFound",
        "details": {"name": "web", "group": "apps", "kind": "deployments"}, "code": 404,
    }
    assert status.conflict("pods", "p").code == 409
    denied = status.forbidden("bob", "list", "pods", namespace="default")
    assert denied.message == 'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default"'

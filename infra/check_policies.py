"""infra/check.py's NetworkPolicy step: the rendered policies evaluated as Kubernetes does
(a connection needs an egress rule of the source's policies and an ingress rule of the
destination's, once any policy selects the pod for that direction), for the connections the
services need."""

from __future__ import annotations


def matches(selector: dict | None, labels: dict) -> bool:
    """A label selector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist)."""
    if selector is None:
        return False
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


class Endpoint:
    """A pod: its labels, its namespace's labels, and its named container ports."""

    def __init__(self, labels: dict, namespace: str, ns_labels: dict | None = None,
                 ports: dict | None = None) -> None:
        self.labels, self.namespace = labels, namespace
        self.ns_labels = ns_labels or {"kubernetes.io/metadata.name": namespace}
        self.ports = ports or {}


def peer_matches(peer: dict, pod: Endpoint, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        return False  # pods are never addressed by these rules' public ranges
    ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_sel is None:
        if pod.namespace != policy_ns:
            return False
    elif not matches(ns_sel, pod.ns_labels):
        return False
    return pod_sel is None or matches(pod_sel, pod.labels)


def port_matches(rule: dict, port: int, dst: Endpoint, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        want = p.get("port")
        if want is None or want == port or dst.ports.get(want) == port:
            return True
    return False


class Policies:
    def __init__(self, resources: list[dict], namespace: str) -> None:
        self.namespace = namespace
        self.items = [r for r in resources if r.get("kind") == "NetworkPolicy"]

    def selecting(self, pod: Endpoint, direction: str) -> list[dict]:
        if pod.namespace != self.namespace:
            return []
        return [p for p in self.items
                if matches(p["spec"].get("podSelector"), pod.labels) or
                p["spec"].get("podSelector") == {}
                if direction in (p["spec"].get("policyTypes") or ["Ingress"])]

    def allows(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        out = self.selecting(src, "Egress")
        if out and not any(
                port_matches(rule, port, dst, protocol)
                and (not rule.get("to") or any(peer_matches(peer, dst, self.namespace)
                                               for peer in rule["to"]))
                for p in out for rule in p["spec"].get("egress") or []):
            return False
        into = self.selecting(dst, "Ingress")
        if into and not any(
                port_matches(rule, port, dst, protocol)
                and (not rule.get("from") or any(peer_matches(peer, src, self.namespace)
                                                 for peer in rule["from"]))
                for p in into for rule in p["spec"].get("ingress") or []):
            return False
        return True

    def default_deny(self) -> bool:
        return any(p["spec"].get("podSelector") == {} and
                   set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"} and
                   not p["spec"].get("ingress") and not p["spec"].get("egress")
                   for p in self.items)

    def own_policy(self, pod: Endpoint) -> bool:
        """A policy that selects this workload's pods and no others' (not `{}`)."""
        return any(p["spec"].get("podSelector") not in (None, {}) and
                   (p["spec"].get("podSelector") or {}).get("matchLabels") and
                   matches(p["spec"]["podSelector"], pod.labels) for p in self.items)

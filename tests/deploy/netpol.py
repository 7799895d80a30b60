"""Which connections a set of NetworkPolicies admits, by the rules of the NetworkPolicy API.

A pod is isolated for a direction once any policy selecting it lists that direction in
policyTypes; then a connection needs a rule of some selecting policy that admits the
peer and the port. A connection happens only if the source's egress and the
destination's ingress both admit it. Named ports resolve on the destination pod.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tests.deploy.chart import matches_selector

Obj = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace, labels, IP, named ports) or, with namespace None, an outside address."""

    name: str
    ip: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)


def namespace_labels(namespace: str) -> dict[str, str]:
    # Every namespace carries its name as a label (Kubernetes sets it since 1.22).
    return {"kubernetes.io/metadata.name": namespace}


def peer_admits(peer: Obj, policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
    if other.namespace is None:
        return False  # selectors only ever match pods
    if "namespaceSelector" in peer:
        if not matches_selector(peer["namespaceSelector"], namespace_labels(other.namespace)):
            return False
    elif other.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or matches_selector(peer["podSelector"], other.labels)


def port_admits(ports: list[Obj] | None, destination: Endpoint, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            wanted = destination.ports.get(wanted)
            if wanted is None:
                continue
        if wanted <= port <= entry.get("endPort", wanted):
            return True
    return False


def rules_admit(
    policies: list[Obj], pod: Endpoint, direction: str, *, other: Endpoint, port: int, protocol: str
) -> bool:
    """Does `pod`'s side of the connection admit it (direction: Ingress or Egress)?"""
    selecting = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == pod.namespace
        and matches_selector(policy["spec"]["podSelector"], pod.labels)
        and direction in policy["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True  # not isolated in this direction
    destination = pod if direction == "Ingress" else other
    peers_key = "from" if direction == "Ingress" else "to"
    for policy in selecting:
        for rule in policy["spec"].get(direction.lower(), []) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                peer_admits(peer, policy["metadata"]["namespace"], other) for peer in peers
            )
            if peer_ok and port_admits(rule.get("ports"), destination, port, protocol):
                return True
    return False


def allowed(
    policies: list[Obj], source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    egress_ok = source.namespace is None or rules_admit(
        policies, source, "Egress", other=destination, port=port, protocol=protocol
    )
    ingress_ok = destination.namespace is None or rules_admit(
        policies, destination, "Ingress", other=source, port=port, protocol=protocol
    )
    return egress_ok and ingress_ok

"""Reading Prometheus text exposition from a service's metrics port."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


def samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    response = requests.get(url, timeout=5)
    response.raise_for_status()
    text = response.text
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.append((sample.name, dict(sample.labels), sample.value))
    return found


def total(url: str, name: str, **labels: str) -> float:
    return sum(
        value
        for sample_name, sample_labels, value in samples(url)
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )

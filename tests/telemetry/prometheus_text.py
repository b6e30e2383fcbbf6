"""Reading Prometheus text exposition back in tests (unit tests here, and the e2e scrape
test, which puts this folder on its path)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def samples(text: str | bytes) -> list[Sample]:
    if isinstance(text, bytes):
        text = text.decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def value(found: list[Sample], name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    matching = [
        s.value
        for s in found
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, f"{name} {labels}: {len(matching)} samples"
    return matching[0]

"""The chart's trace sampler: parent-based, with the ratio an operator sets."""

from __future__ import annotations

import pytest

from tests.deploy.chart import named, render

SERVICES = ("ideasnap-gateway", "ideasnap-upload-svc", "ideasnap-ai-svc", "ideasnap-library-svc")


def test_every_service_samples_a_tenth_of_new_traces_and_follows_its_caller_by_default() -> None:
    objects = render()
    for service in SERVICES:
        data = named(objects, "ConfigMap", service)["data"]
        assert data["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio", service
        assert float(data["OTEL_TRACES_SAMPLER_ARG"]) == pytest.approx(0.1), service


def test_the_ratio_an_operator_sets_reaches_every_service() -> None:
    objects = render({"config": {"traceSampleRatio": 1.0}})
    for service in SERVICES:
        data = named(objects, "ConfigMap", service)["data"]
        assert float(data["OTEL_TRACES_SAMPLER_ARG"]) == pytest.approx(1.0), service


@pytest.mark.parametrize("ratio", [-0.1, 1.5, "all"])
def test_a_ratio_outside_zero_to_one_is_refused(ratio: object) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match="traceSampleRatio"):
        render({"config": {"traceSampleRatio": ratio}})

"""The operators' view of IdeaSnap: Grafana dashboards as code and the queries they rely on.

Dashboards are Python (grafana-foundation-sdk builders) so every panel's query is reviewed
like code and regenerated into the chart by one command (``make dashboards``). The alert
rules live in the chart itself (``helm/ideasnap/templates/prometheusrule.yaml``) because
their thresholds are chart values. :mod:`observability.inventory` lists every query both
of them run, so the tests can execute each one against a real Prometheus.
"""

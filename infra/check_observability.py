"""The alert rules and the dashboard of infra/observability, for check.py: a rules file that
Prometheus loads (groups of alerts, each with its expression, a `for` duration, a severity
and a summary), a dashboard Grafana imports, and both rendered by the prod overlay as the
ConfigMaps the component says. Their PromQL and the metrics it names are checked by
crates/common/src/metrics/observability_tests.rs."""

from __future__ import annotations

import json
import re

from check import OBSERVABILITY_DIR

RULES = OBSERVABILITY_DIR / "alerts.yaml"
DASHBOARD = OBSERVABILITY_DIR / "dashboard.json"
SEVERITIES = {"warning", "critical"}
DURATION = re.compile(r"^(\d+[smhd])+$")
# The ConfigMaps the prod overlay renders: name → (key, file, the label a loader finds it by).
CONFIGMAPS = {
    "ticketing-alert-rules": ("alerts.yaml", RULES, ("prometheus_rule", "1")),
    "ticketing-grafana-dashboard": ("ticketing.json", DASHBOARD, ("grafana_dashboard", "1")),
}


def check(prod, yaml, problems) -> None:
    """`prod`: the prod overlay's Cluster."""
    rules = yaml.safe_load(RULES.read_text()) or {}
    names = set()
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            alert = rule.get("alert")
            where = f"{group.get('name')}/{alert}"
            if not alert or alert in names:
                problems.add(RULES, f"{where}: an alert needs a name of its own")
            names.add(alert)
            if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                problems.add(RULES, f"{where}: no expr")
            if "for" in rule and not DURATION.match(str(rule["for"])):
                problems.add(RULES, f"{where}: `for: {rule['for']}` is not a duration")
            if (rule.get("labels") or {}).get("severity") not in SEVERITIES:
                problems.add(RULES, f"{where}: severity must be one of {sorted(SEVERITIES)}")
            if not (rule.get("annotations") or {}).get("summary"):
                problems.add(RULES, f"{where}: no summary annotation")
    if not names:
        problems.add(RULES, "no alert")

    dashboard = json.loads(DASHBOARD.read_text())
    if not dashboard.get("uid") or not dashboard.get("title"):
        problems.add(DASHBOARD, "a dashboard needs a uid and a title")
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            continue
        title = panel.get("title")
        if not panel.get("targets") or not all(t.get("expr") for t in panel["targets"]):
            problems.add(DASHBOARD, f"panel {title!r}: every target needs an expr")
        if (panel.get("datasource") or {}).get("uid") != "${datasource}":
            problems.add(DASHBOARD, f"panel {title!r}: datasource must be ${{datasource}}")

    for name, (key, source, (label, value)) in CONFIGMAPS.items():
        found = prod.get("ConfigMap", name)
        if not found:
            problems.add(prod.where, f"no ConfigMap {name} (infra/observability)")
            continue
        configmap = found[1]
        if (configmap.get("data") or {}).get(key) != source.read_text():
            problems.add(prod.where, f"ConfigMap {name}: {key} is not {source.name}")
        if (configmap.get("metadata", {}).get("labels") or {}).get(label) != value:
            problems.add(prod.where, f"ConfigMap {name}: no label {label}: {value!r}")

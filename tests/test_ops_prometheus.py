"""ops/: the Prometheus rules and the Grafana dashboard, proven against the real tools.

promtool checks the rules and runs their unit tests (ops/prometheus/rater.rules.test.yml); a
private Prometheus (ops/prometheus/local.py) scrapes a daemon rating simulated calls, and
every dashboard query, template variable and rule expression must return series through its
HTTP API: a renamed metric or label fails here, not on an operator's screen at night.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from rater.calls.registry import LegRegistry
from tests.e2e_world import C3, P1, SH, UK, running_world

REPO = Path(__file__).resolve().parents[1]
PROM_DIR = REPO / "ops" / "prometheus"
RULES = PROM_DIR / "rater.rules.yml"
RULE_TESTS = PROM_DIR / "rater.rules.test.yml"
RUNBOOK = REPO / "ops" / "RUNBOOK.md"
DASHBOARD = REPO / "ops" / "grafana" / "rater.json"

# Every label a rule or panel may show: none of them carries an account or a phone number.
ALLOWED_LABELS = {"__name__", "job", "instance", "node", "reason", "result", "settlement",
                  "level", "found", "outcome", "le", "alertname", "alertstate", "severity"}
# Grafana's variables, as the test's Prometheus is asked: every instance and node.
GRAFANA_VARS = {"$instance": ".*", "$node": ".*", "$__rate_interval": "30s",
                "$__range": "1m", "$__interval": "5s"}
COMPARISON = re.compile(r" (==|!=|>=|<=|>|<) ")


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does)")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def alert_blocks() -> dict[str, str]:
    """Alert name -> its part of rater.rules.yml (the file lists the alerts last)."""
    text = RULES.read_text()
    found = list(re.finditer(r"^\s+- alert: (\w+)$", text, re.MULTILINE))
    ends = [m.start() for m in found[1:]] + [len(text)]
    return {m.group(1): text[m.start():end] for m, end in zip(found, ends, strict=True)}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def as_bool(expr: str) -> str:
    """An alert's expression with each comparison made `bool`: 0 or 1 for every series the
    expression compares, whether or not the alert would fire now."""
    return COMPARISON.sub(r" \1 bool ", expr)


# --- the rules, checked and unit-tested by promtool --------------------------------------


def test_promtool_checks_the_rules_and_runs_their_unit_tests(tmp_path):
    check = promtool("check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    unit = promtool("test", "rules", RULE_TESTS.name, cwd=PROM_DIR)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    example = (PROM_DIR / "prometheus.example.yml").read_text()
    config = tmp_path / "prometheus.yml"
    config.write_text(example.replace("/etc/prometheus/rater.rules.yml", str(RULES)))
    checked = promtool("check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_has_a_summary_a_runbook_section_and_a_unit_test_that_fires():
    alerts = alert_blocks()
    assert len(alerts) >= 9
    runbook = RUNBOOK.read_text()
    sections = set(re.findall(r"^## (\w+)$", runbook, re.MULTILINE))
    assert sections == set(alerts)
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels",
                           RULE_TESTS.read_text()))
    assert fired == set(alerts)
    for name, block in alerts.items():
        assert re.search(r'summary: ".*\{\{ \$labels.instance \}\}', block), name
        assert f'runbook: "ops/RUNBOOK.md#{name.lower()}"' in block, name
        assert re.search(r"severity: (critical|warning)", block), name


# --- the dashboard ----------------------------------------------------------------------


def test_the_dashboard_filters_by_instance_and_node_and_shows_no_account_or_number():
    dash = dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"datasource", "instance", "node"} <= set(variables)
    assert all(variables[v]["includeAll"] and variables[v]["allValue"] == ".*"
               for v in ("instance", "node"))
    found = panels()
    assert len(found) >= 15
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in found:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr, legend = target["expr"], target.get("legendFormat", "")
            assert 'instance=~"$instance"' in expr, (panel["title"], expr)
            if "rater_esl_" in expr:
                assert 'node=~"$node"' in expr, (panel["title"], expr)
            shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
            for group in re.findall(r"\bby \(([^)]*)\)", expr):
                shown |= {label.strip() for label in group.split(",")}
            assert shown <= ALLOWED_LABELS, (panel["title"], shown - ALLOWED_LABELS)


# --- the metrics RaterLegOverdue compares ----------------------------------------------


def test_the_oldest_live_leg_is_the_first_taken_up_and_still_live():
    legs = LegRegistry(debit_interval=60, reserve_ahead=5.0)
    assert legs.oldest_age(100.0) == 0.0
    legs.create("a", "fs1", created_at=10.0)
    legs.create("b", "fs2", created_at=40.0)
    assert legs.oldest_age(100.0) == 90.0
    legs.drop("a")
    assert legs.oldest_age(100.0) == 60.0


# --- a real Prometheus scraping a daemon under load --------------------------------------


class PrometheusAPI:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as reply:
                body = json.loads(reply.read())
        except urllib.error.HTTPError as exc:  # 400: a query Prometheus cannot run
            raise AssertionError(f"{path} {params}: {exc.read().decode()}") from None
        assert body["status"] == "success", body
        return body["data"]

    def series(self, promql: str) -> list[dict[str, Any]]:
        return self.get("/api/v1/query", query=promql)["result"]


@contextmanager
def local_prometheus(target: str, tmp: Path) -> Iterator[PrometheusAPI]:
    """ops/prometheus/local.py scraping `target` every second; stopped with SIGTERM."""
    port = _free_port()
    log = tmp / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(PROM_DIR / "local.py"), "--target", target,
             "--port", str(port), "--interval", "1s"],
            stdout=out, stderr=subprocess.STDOUT)
    api = PrometheusAPI(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while "prometheus on http://" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "Prometheus not ready:\n" + log.read_text()
            time.sleep(0.2)
        yield api
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def evaluated(rule: dict[str, Any]) -> bool:
    return not rule["lastEvaluation"].startswith("0001-")  # Go's zero time: not yet


def queries_to_check(api: PrometheusAPI) -> dict[str, str]:
    """What must return series: name -> PromQL. Every dashboard target; every recording
    rule's expression and the series it records; every alert expression made `bool`."""
    queries = {}
    for panel in panels():
        for target in panel["targets"]:
            queries[f"panel {panel['title']!r} {target['refId']}"] = grafana_to_promql(
                target["expr"])
    groups = api.get("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {r["name"] for r in rules if r["type"] == "alerting"} == set(alert_blocks())
    for rule in rules:
        if rule["type"] == "recording":
            queries[f"rule {rule['name']}"] = rule["query"]
            queries[f"recorded {rule['name']}"] = rule["name"]
        else:
            assert COMPARISON.search(rule["query"]), rule["query"]
            queries[f"alert {rule['name']}"] = as_bool(rule["query"])
    return queries


def without_series(api: PrometheusAPI, queries: dict[str, str]) -> dict[str, str]:
    missing = {}
    for name, promql in queries.items():
        result = api.series(promql)
        if not result:
            missing[name] = promql
        for series in result:
            labels = set(series["metric"])
            assert labels <= ALLOWED_LABELS, (name, labels - ALLOWED_LABELS)
    return missing


@pytest.mark.slow
def test_a_real_prometheus_finds_series_for_every_panel_variable_and_rule(
        cfg, database_url, tmp_path):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus; .ci/run does)")
    with running_world(cfg, database_url) as world:
        # Paying calls over a three-level chain, a customer cut off (SH), refusals: an
        # unknown account and a blocked prefix (4490).
        load = world.sim.run_load(
            15, duration=120, accounts=(P1, C3, C3, SH, "2999999999"),
            destinations=(UK, UK, "449012345"), talk_seconds=(0.3, 2.0), seed=18)
        try:
            host, port = world.daemon.status.address
            with local_prometheus(f"{host}:{port}", tmp_path) as api:
                deadline = time.monotonic() + 60
                while not all(evaluated(r) for g in api.get("/api/v1/rules")["groups"]
                              for r in g["rules"]):
                    assert time.monotonic() < deadline, "rules never evaluated"
                    time.sleep(0.5)
                queries = queries_to_check(api)
                queries["rating.max_call_seconds exported"] = (
                    f"rater_max_call_seconds == {cfg.rating.max_call_seconds}")
                missing = without_series(api, queries)
                while missing and time.monotonic() < deadline:
                    time.sleep(0.5)
                    missing = without_series(api, missing)
                assert missing == {}, f"no series after 60 s: {json.dumps(missing, indent=1)}"
                rules = [r for g in api.get("/api/v1/rules")["groups"] for r in g["rules"]]
                assert all(r["health"] == "ok" for r in rules), rules
                for var in ("instance", "node"):
                    definition = {v["name"]: v for v in
                                  dashboard()["templating"]["list"]}[var]["definition"]
                    match = re.fullmatch(r"label_values\((.+), (\w+)\)", definition)
                    assert match and match.group(2) == var, definition
                    values = api.get(f"/api/v1/label/{var}/values",
                                     **{"match[]": grafana_to_promql(match.group(1))})
                    assert values, definition
        finally:
            load.stop()

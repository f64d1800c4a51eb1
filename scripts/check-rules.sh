#!/usr/bin/env bash
# Check the monitoring configuration.
#
#   1. config/prometheus-rules.yaml and the chart's copy (helm/kafka-eventbridge/files/)
#      are byte-identical; when helm is at hand (.cache/bin, from scripts/check-chart.sh,
#      or PATH) the chart's rendered PrometheusRule is also compared with the file.
#   2. promtool check rules on the file (and on the rendered PrometheusRule), then the
#      unit tests in config/prometheus-rules.test.yaml.
#   3. config/grafana-dashboard.json: well-formed dashboard, every query valid PromQL
#      (promtool checks them as recording rules, Grafana variables substituted).
#   4. Every alert has a test that expects it to fire, and a runbook_url naming a section
#      of docs/runbook.md that exists.
#   5. A real scrape of the daemon's /metrics (its HTTP server on a loopback port, fresh
#      registry): promtool check metrics lints it, and every kafka_eventbridge_* series the
#      rules and the dashboard read must be in it.
#
# promtool comes from Debian's `prometheus` package. When it is not on PATH the package is
# downloaded (not installed: no service, no user) and promtool extracted to .cache/bin.
#
# Usage: scripts/check-rules.sh
# Environment: PYTHON  interpreter with the project and PyYAML installed (default .venv/bin/python)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

readonly rules="config/prometheus-rules.yaml"
readonly rules_tests="config/prometheus-rules.test.yaml"
readonly chart_rules="helm/kafka-eventbridge/files/prometheus-rules.yaml"
readonly dashboard="config/grafana-dashboard.json"
readonly bin="${repo_root}/.cache/bin"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'check-rules: %s\n' "$*" >&2; exit 1; }

if [[ -n "${PYTHON:-}" ]]; then
  python="${PYTHON}"
elif [[ -x .venv/bin/python ]]; then
  python="${repo_root}/.venv/bin/python"
else
  python="python3"
fi

find_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    command -v promtool
    return
  fi
  if [[ ! -x "${bin}/promtool" ]]; then
    log "promtool missing: extracting it from Debian's prometheus package into .cache/bin"
    local deb_dir
    deb_dir="$(mktemp -d)"
    # apt-get download needs the package lists; refresh them only when it fails.
    if ! (cd "${deb_dir}" && apt-get download prometheus >/dev/null 2>&1); then
      apt-get update >/dev/null
      (cd "${deb_dir}" && apt-get download prometheus >/dev/null)
    fi
    dpkg-deb -x "${deb_dir}"/prometheus_*.deb "${deb_dir}/root"
    mkdir -p "${bin}"
    install -m 0755 "${deb_dir}/root/usr/bin/promtool" "${bin}/promtool"
    rm -rf "${deb_dir}"
  fi
  printf '%s\n' "${bin}/promtool"
}

find_helm() {
  if [[ -x "${bin}/helm" ]]; then
    printf '%s\n' "${bin}/helm"
  elif command -v helm >/dev/null 2>&1; then
    command -v helm
  fi
}

main() {
  local promtool helm work
  promtool="$(find_promtool)"
  helm="$(find_helm)"
  work="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: work is local
  trap "rm -rf '${work}'" EXIT

  log "${rules} and ${chart_rules} are identical"
  cmp "${rules}" "${chart_rules}" \
    || die "the chart's copy differs: cp ${rules} ${chart_rules}"

  log "promtool check rules + test rules ($("${promtool}" --version 2>&1 | head -n 1))"
  "${promtool}" check rules "${rules}"
  "${promtool}" test rules "${rules_tests}"

  if [[ -n "${helm}" ]]; then
    log "the chart's PrometheusRule renders the same rules"
    "${helm}" template kafka-eventbridge helm/kafka-eventbridge \
      -f helm/kafka-eventbridge/ci/default-values.yaml --set prometheusRule.enabled=true \
      --show-only templates/prometheusrule.yaml > "${work}/prometheusrule.yaml"
  else
    log "helm not found (run scripts/check-chart.sh first): skipping the rendered PrometheusRule"
  fi

  log "dashboard structure, PromQL and metric names"
  "${python}" - "${rules}" "${dashboard}" "${work}" "${rules_tests}" <<'PY'
import json
import re
import sys
from pathlib import Path

import yaml

rules_path, dashboard_path, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
tests_path = sys.argv[4]
problems = []
rules = yaml.safe_load(Path(rules_path).read_text())

# 1. The rendered PrometheusRule (if any) carries exactly the file's groups.
rendered = work / "prometheusrule.yaml"
if rendered.exists():
    spec = yaml.safe_load(rendered.read_text())["spec"]
    if spec != rules:
        problems.append("the rendered PrometheusRule's spec differs from " + rules_path)
    (work / "rendered-rules.yaml").write_text(yaml.safe_dump(spec))

# 2. The dashboard: unique panel ids, a grid position each, the datasource variable used,
#    and every query collected for promtool.
dashboard = json.loads(Path(dashboard_path).read_text())
ids, exprs = set(), []
for panel in dashboard["panels"]:
    where = f"panel {panel.get('id')} ({panel.get('title')!r})"
    if panel.get("id") in ids:
        problems.append(f"{where}: duplicate id")
    ids.add(panel.get("id"))
    if not {"h", "w", "x", "y"} <= set(panel.get("gridPos", {})):
        problems.append(f"{where}: incomplete gridPos")
    if panel["type"] == "row":
        continue
    if panel.get("datasource", {}).get("uid") != "${datasource}":
        problems.append(f"{where}: not bound to the $datasource variable")
    if not panel.get("targets"):
        problems.append(f"{where}: no query")
    for target in panel.get("targets", []):
        exprs.append((where, target["expr"]))
variables = {v["name"] for v in dashboard["templating"]["list"]}
for where, expr in exprs:
    for name in re.findall(r"\$(\w+)", expr):
        if not name.startswith("__") and name not in variables:
            problems.append(f"{where}: unknown variable ${name}")

# Grafana's variables replaced by values PromQL accepts, one recording rule per query.
substitutions = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def as_promql(expr):
    for variable, value in substitutions.items():
        expr = expr.replace(variable, value)
    return re.sub(r"\$\w+", ".*", expr)


recording = {"groups": [{"name": "dashboard", "rules": [
    {"record": f"dashboard:query_{i}", "expr": as_promql(expr)} for i, (_, expr) in enumerate(exprs)
]}]}
(work / "dashboard-queries.yaml").write_text(yaml.safe_dump(recording))

# 3. Metric names: what the rules and the dashboard read must be exported by the daemon.
#    Scrape a fresh Metrics registry through the daemon's own HTTP server (loopback, a
#    free port), as Prometheus would; keep the body for `promtool check metrics`.
try:
    from kafka_eventbridge.telemetry import Health, HttpServer, Metrics
except ImportError as error:
    sys.exit(f"check-rules: cannot import kafka_eventbridge.telemetry ({error}); "
             "set PYTHON to an interpreter with the project installed")
from urllib.request import urlopen

metrics = Metrics()
try:
    server = HttpServer("127.0.0.1", 0, metrics, Health(stall_seconds=60.0))
    server.start()
    try:
        with urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as response:
            body = response.read()
    finally:
        server.stop()
except (TypeError, AttributeError) as error:  # the server's API moved: read the registry
    print(f"note: no HTTP scrape ({error}); using Metrics.exposition()", file=sys.stderr)
    body = metrics.exposition()
(work / "metrics.txt").write_bytes(body)
suffixes = {"histogram": ["_bucket", "_sum", "_count"], "summary": ["_sum", "_count", ""]}
exported = set()
for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", body.decode(), re.M):
    exported |= {name + suffix for suffix in suffixes.get(kind, [""])}
used = set(re.findall(r"\bkafka_eventbridge_\w+", Path(rules_path).read_text()))
used |= {name for _, expr in exprs for name in re.findall(r"\bkafka_eventbridge_\w+", expr)}
for name in sorted(used - exported):
    problems.append(f"{name} is read by the rules or the dashboard but not exported")
unused = sorted(n for n in exported - used if not n.endswith("_created"))
if unused:
    print("note: exported but not shown anywhere:", ", ".join(unused), file=sys.stderr)

# 4. Every alert is tested firing at least once, and links a runbook section that exists.
tests = yaml.safe_load(Path(tests_path).read_text())
fired = {
    case["alertname"]
    for test in tests["tests"]
    for case in test.get("alert_rule_test", [])
    if case.get("exp_alerts")
}
runbook = Path("docs/runbook.md").read_text()
anchors = {
    re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    for heading in re.findall(r"^#+ (.+)$", runbook, re.M)
}
for group in rules["groups"]:
    for rule in group["rules"]:
        name = rule.get("alert")
        if name is None:
            continue
        if name not in fired:
            problems.append(f"{name}: no test in {tests_path} expects it to fire")
        url = rule.get("annotations", {}).get("runbook_url", "")
        if not url.startswith("docs/runbook.md#"):
            problems.append(f"{name}: runbook_url must be docs/runbook.md#<section>, got {url!r}")
        elif url.split("#", 1)[1] not in anchors:
            problems.append(f"{name}: docs/runbook.md has no section #{url.split('#', 1)[1]}")

if problems:
    sys.exit("check-rules:\n  " + "\n  ".join(problems))
print(f"{len(dashboard['panels'])} panels, {len(exprs)} queries, "
      f"{len(used)} metric names found in the daemon's /metrics", file=sys.stderr)
PY

  if [[ -f "${work}/rendered-rules.yaml" ]]; then
    "${promtool}" check rules "${work}/rendered-rules.yaml"
  fi
  "${promtool}" check rules "${work}/dashboard-queries.yaml"
  log "promtool check metrics on the daemon's /metrics"
  "${promtool}" check metrics < "${work}/metrics.txt"
  log "rules and dashboard OK"
}

main "$@"

#!/usr/bin/env bash
# Check the Helm chart, offline once the tools are cached.
#
#   1. helm and kubeconform are built from the Go module proxy into .cache/bin (once per
#      pinned version; later runs reuse them).
#   2. Kubernetes JSON schemas come from PyPI packages, installed once into
#      .cache/venvs/k8s-schemas and turned into files kubeconform reads:
#        - kubernetes-validate ships the API schemas of every Kubernetes minor version;
#          its references are rewritten to plain relative files;
#        - cloudcoil-models-keda and cloudcoil-models-prometheus-operator ship pydantic
#          models generated from the KEDA and Prometheus Operator CRDs; their JSON schemas
#          are exported with unknown fields forbidden (like kubeconform -strict).
#   3. For each ci/*-values.yaml: helm lint --strict, helm template (which also executes
#      NOTES.txt, so its errors surface here), and kubeconform -strict
#      against the oldest supported (KUBE_MIN) and the newest packaged (KUBE_MAX) versions.
#      Every kind must have a schema: none is skipped.
#   4. Renders that must fail (bad combinations of values) are checked to fail with the
#      expected message.
#
# Usage: scripts/check-chart.sh
# Rendered manifests are left in .cache/chart-render/ for inspection.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

readonly chart="helm/kafka-eventbridge"
readonly helm_version="v3.22.0"
readonly kubeconform_version="v0.8.0"
readonly kubernetes_validate_version="1.37.0"
readonly keda_models_version="2.16.1.0"
readonly prometheus_operator_models_version="0.80.1.0"
readonly kube_min="${KUBE_MIN:-1.27.0}"
readonly kube_max="${KUBE_MAX:-1.37.0}"

readonly cache="${repo_root}/.cache"
readonly bin="${cache}/bin"
readonly tool_venv="${cache}/venvs/k8s-schemas"
readonly schemas="${cache}/k8s-schemas"
readonly render_dir="${cache}/chart-render"
python="${PYTHON:-python3}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'check-chart: %s\n' "$*" >&2; exit 1; }

# go_tool NAME MODULE_PATH VERSION [LDFLAGS]: build once into .cache/bin; a version file
# beside the binary makes later runs skip the build.
go_tool() {
  local name="$1" package="$2" version="$3" ldflags="${4:-}"
  local stamp="${bin}/.${name}.version"
  if [[ -x "${bin}/${name}" && "$(cat "${stamp}" 2>/dev/null)" == "${version}" ]]; then
    return
  fi
  command -v go >/dev/null 2>&1 || die "${name} ${version} is missing and Go is not installed"
  log "building ${name} ${version} (go install, once)"
  mkdir -p "${bin}"
  GOBIN="${bin}" CGO_ENABLED=0 go install -ldflags "${ldflags}" "${package}@${version}"
  printf '%s\n' "${version}" > "${stamp}"
}

ensure_tools() {
  # The flags helm's own release build sets: its version, and the Kubernetes version of
  # its client libraries (k8s.io/* v0.37 in helm v3.22) as the default for lint/template.
  local helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${helm_version}"
  local pkg
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    helm_ldflags+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=37"
  done
  go_tool helm helm.sh/helm/v3/cmd/helm "${helm_version}" "${helm_ldflags}"
  go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "${kubeconform_version}" "-s -w"
}

ensure_schemas() {
  local want
  want="kubernetes-validate==${kubernetes_validate_version} cloudcoil-models-keda==${keda_models_version} cloudcoil-models-prometheus-operator==${prometheus_operator_models_version} kube=${kube_min},${kube_max}"
  if [[ "$(cat "${schemas}/.stamp" 2>/dev/null)" == "${want}" ]]; then
    return
  fi
  if [[ ! -x "${tool_venv}/bin/python" ]]; then
    "${python}" -m venv "${tool_venv}"
  fi
  log "installing schema packages into .cache/venvs/k8s-schemas (once)"
  "${tool_venv}/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==${kubernetes_validate_version}" \
    "cloudcoil-models-keda==${keda_models_version}" \
    "cloudcoil-models-prometheus-operator==${prometheus_operator_models_version}"

  log "writing kubeconform schemas to .cache/k8s-schemas"
  rm -rf "${schemas}"
  "${tool_venv}/bin/python" - "${schemas}" "${kube_min}" "${kube_max}" <<'PY'
import json
import sys
from pathlib import Path

import kubernetes_validate

out = Path(sys.argv[1])
packaged = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"

# Kubernetes APIs. The packaged "-local" schemas refer to "/api/_definitions.json" below
# an "$id" on kubernetes.io; kubeconform resolves references as files, so drop the $id and
# make the references relative to the schema's own directory.
for version in sys.argv[2:]:
    name = f"v{version}-local-strict"
    source = packaged / name
    if not source.is_dir():
        known = sorted(p.name for p in packaged.iterdir() if p.name.endswith("-local-strict"))
        sys.exit(f"check-chart: kubernetes-validate has no {name}; it has {known}")
    target = out / name
    target.mkdir(parents=True)
    for schema_file in source.glob("*.json"):
        schema = json.loads(schema_file.read_text())
        schema.pop("$id", None)
        text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
        (target / schema_file.name).write_text(text)

# CRDs the chart renders, from models generated from the upstream CRDs.
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor


def forbid_unknown_fields(node):
    """Like kubeconform -strict: an object with declared properties takes no others."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            forbid_unknown_fields(value)
    elif isinstance(node, list):
        for value in node:
            forbid_unknown_fields(value)


for model, group, version in [
    (ScaledObject, "keda.sh", "v1alpha1"),
    (ServiceMonitor, "monitoring.coreos.com", "v1"),
    (PrometheusRule, "monitoring.coreos.com", "v1"),
]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    forbid_unknown_fields(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    target = out / "crds" / group / f"{model.__name__.lower()}_{version}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(schema))
PY
  printf '%s\n' "${want}" > "${schemas}/.stamp"
}

validate_manifests() {
  local manifest="$1" version
  for version in "${kube_min}" "${kube_max}"; do
    "${bin}/kubeconform" -strict -summary \
      -kubernetes-version "${version}" \
      -schema-location "${schemas}/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      -schema-location "${schemas}/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
      "${manifest}"
  done
}

check_values_files() {
  local values name
  rm -rf "${render_dir}"
  mkdir -p "${render_dir}"
  for values in "${chart}"/ci/*-values.yaml; do
    name="$(basename "${values}" .yaml)"
    log "${name}: helm lint"
    "${bin}/helm" lint "${chart}" --strict --quiet --kube-version "${kube_max}" -f "${values}"
    log "${name}: helm template + kubeconform (Kubernetes ${kube_min} and ${kube_max})"
    "${bin}/helm" template kafka-eventbridge "${chart}" --namespace bridge \
      --kube-version "${kube_max}" -f "${values}" > "${render_dir}/${name}.yaml"
    validate_manifests "${render_dir}/${name}.yaml"
  done
}

# expect_failure "MESSAGE" HELM_TEMPLATE_ARGS...: the render must fail and say MESSAGE.
expect_failure() {
  local message="$1" output
  shift
  if output="$("${bin}/helm" template kafka-eventbridge "${chart}" --kube-version "${kube_max}" \
    -f "${chart}/ci/default-values.yaml" "$@" 2>&1)"; then
    die "rendering with $* succeeded; expected: ${message}"
  fi
  if [[ "${output}" != *"${message}"* ]]; then
    printf '%s\n' "${output}" >&2
    die "rendering with $* failed without saying: ${message}"
  fi
}

check_refusals() {
  log "renders that must fail"
  expect_failure "keda.enabled needs partitions" --set keda.enabled=true
  expect_failure "above the 4 partitions" \
    --set keda.enabled=true --set partitions=4 --set keda.maxReplicaCount=5
  expect_failure "above the 2 partitions" --set partitions=2 --set replicaCount=3
  expect_failure "above the 3 partitions" --set partitions=3 --set autoscaling.enabled=true \
    --set autoscaling.maxReplicas=4 --set resources.requests.cpu=100m
  expect_failure "exclude each other" --set autoscaling.enabled=true --set keda.enabled=true \
    --set partitions=3 --set resources.requests.cpu=100m
  expect_failure "must exceed BRIDGE_SHUTDOWN_TIMEOUT_SECONDS" \
    --set terminationGracePeriodSeconds=30
  expect_failure "looks like a secret" --set config.BRIDGE_KAFKA_SASL_PASSWORD=hunter2
  expect_failure "looks like a secret" \
    --set-string 'config.BRIDGE_KAFKA_SASL_OAUTHBEARER_CONFIG=principal=bridge'
  expect_failure "extraEnv BRIDGE_KAFKA_SASL_PASSWORD looks like a secret" \
    --set 'extraEnv[0].name=BRIDGE_KAFKA_SASL_PASSWORD' --set 'extraEnv[0].value=hunter2'
  expect_failure "secrets.env.BRIDGE_SHUTDOWN_TIMEOUT_SECONDS" \
    --set secrets.env.BRIDGE_SHUTDOWN_TIMEOUT_SECONDS.name=s \
    --set secrets.env.BRIDGE_SHUTDOWN_TIMEOUT_SECONDS.key=k
  expect_failure "config.BRIDGE_KAFKA_TOPICS is required" --set config.BRIDGE_KAFKA_TOPICS=
  expect_failure "needs resources.requests.cpu" --set autoscaling.enabled=true --set resources.requests=null
  expect_failure "set containerPort instead" --set config.BRIDGE_HTTP_PORT=9000
  expect_failure "additional properties 'replicas' not allowed" --set replicas=2
  expect_failure "need aws.roleArn" --set aws.roleExternalId=partner-7f3a
  expect_failure "set it with the aws.role* values instead" \
    --set aws.roleArn=arn:aws:iam::123456789012:role/r --set config.BRIDGE_AWS_ROLE_ARN=x
  expect_failure "roleArn" --set aws.roleArn=not-an-arn
  expect_failure "tracing.otlpEndpoint is required when tracing.enabled" --set tracing.enabled=true
  expect_failure "looks like a secret" \
    --set config.BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET=s3cr3t

  # The derived grace period follows the drain timeout.
  local rendered
  rendered="$("${bin}/helm" template kafka-eventbridge "${chart}" --kube-version "${kube_max}" \
    -f "${chart}/ci/default-values.yaml" --set config.BRIDGE_SHUTDOWN_TIMEOUT_SECONDS=50 \
    --show-only templates/deployment.yaml)"
  [[ "${rendered}" == *"terminationGracePeriodSeconds: 65"* ]] \
    || die "terminationGracePeriodSeconds is not derived as drain + margin (expected 65)"
  # ... wherever the timeout is set: extraEnv comes last in the container's env and wins.
  rendered="$(render_deployment --set config.BRIDGE_SHUTDOWN_TIMEOUT_SECONDS=50 \
    --set 'extraEnv[0].name=BRIDGE_SHUTDOWN_TIMEOUT_SECONDS' --set-string 'extraEnv[0].value=100')"
  [[ "${rendered}" == *"terminationGracePeriodSeconds: 115"* ]] \
    || die "terminationGracePeriodSeconds does not follow BRIDGE_SHUTDOWN_TIMEOUT_SECONDS in extraEnv"

  # The checksum covers every setting the pods read, not only the mapping routes.
  local base changed name
  base="$(render_deployment | grep 'checksum/config')"
  for change in "config.BRIDGE_LOG_LEVEL=DEBUG" "extraEnv[0].name=X" "aws.region=eu-west-1" \
    "mapping.existingConfigMap=orders-mapping" "secrets.envFrom[0]=creds"; do
    changed="$(render_deployment --set "${change}" | grep 'checksum/config')"
    [[ "${changed}" != "${base}" ]] || die "checksum/config does not change with ${change}"
  done

  # Defaults an on-call team relies on.
  rendered="$(render_deployment)"
  for expected in "maxSurge: 1" "maxUnavailable: 0" "startupProbe:" "memory: 512Mi"; do
    [[ "${rendered}" == *"${expected}"* ]] || die "default Deployment lacks '${expected}'"
  done
  rendered="$("${bin}/helm" template kafka-eventbridge "${chart}" --kube-version "${kube_max}" \
    -f "${chart}/ci/default-values.yaml" --set podDisruptionBudget.enabled=true \
    --set keda.enabled=true --set partitions=6)"
  for expected in "unhealthyPodEvictionPolicy: AlwaysAllow" "offsetResetPolicy: earliest" \
    "stabilizationWindowSeconds: 600"; do
    [[ "${rendered}" == *"${expected}"* ]] || die "default PDB/ScaledObject lacks '${expected}'"
  done
  name="$("${bin}/helm" template kafka-eventbridge "${chart}" --kube-version "${kube_max}" \
    -f "${chart}/ci/default-values.yaml" --set prometheusRule.enabled=true \
    --set prometheusRule.runbookBaseUrl=https://docs.example.com/kafka-eventbridge/ \
    --show-only templates/prometheusrule.yaml)"
  [[ "${name}" == *"runbook_url: https://docs.example.com/kafka-eventbridge/docs/runbook.md#kafkaeventbridgeabsent"* ]] \
    || die "prometheusRule.runbookBaseUrl is not put in front of runbook_url"
}

# render_deployment HELM_ARGS...: the Deployment of the default values with these changes.
render_deployment() {
  "${bin}/helm" template kafka-eventbridge "${chart}" --kube-version "${kube_max}" \
    -f "${chart}/ci/default-values.yaml" "$@" --show-only templates/deployment.yaml
}

main() {
  ensure_tools
  ensure_schemas
  check_values_files
  check_refusals
  log "chart OK"
}

main "$@"

{{/*
Expand the name of the chart.
*/}}
{{- define "kafka-eventbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name, truncated at 63 characters (DNS label limit).
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "kafka-eventbridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "kafka-eventbridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "kafka-eventbridge.labels" -}}
helm.sh/chart: {{ include "kafka-eventbridge.chart" . }}
{{ include "kafka-eventbridge.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable across upgrades, so never add a version here.
*/}}
{{- define "kafka-eventbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka-eventbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "kafka-eventbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kafka-eventbridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference; a digest wins over the tag.
*/}}
{{- define "kafka-eventbridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Name of the ConfigMap holding the mapping file, empty when there is none.
*/}}
{{- define "kafka-eventbridge.mappingConfigMap" -}}
{{- if .Values.mapping.existingConfigMap }}
{{- .Values.mapping.existingConfigMap }}
{{- else if .Values.mapping.routes }}
{{- printf "%s-mapping" (include "kafka-eventbridge.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The bridge's drain timeout in seconds (BRIDGE_SHUTDOWN_TIMEOUT_SECONDS, default 30),
rounded up to a whole second.
*/}}
{{- define "kafka-eventbridge.shutdownTimeoutSeconds" -}}
{{- $raw := toString (dig "BRIDGE_SHUTDOWN_TIMEOUT_SECONDS" "30" .Values.config | default "30") }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?$" $raw) }}
{{- fail (printf "config.BRIDGE_SHUTDOWN_TIMEOUT_SECONDS: %q is not a number of seconds" $raw) }}
{{- end }}
{{- ceil (float64 $raw) | int }}
{{- end }}

{{/*
terminationGracePeriodSeconds: derived from the drain timeout, or validated against it.
Kubernetes sends SIGKILL when it runs out, so it must leave the bridge time to drain,
commit, leave the group and flush the dead-letter producer.
*/}}
{{- define "kafka-eventbridge.terminationGracePeriodSeconds" -}}
{{- $drain := include "kafka-eventbridge.shutdownTimeoutSeconds" . | int }}
{{- $explicit := .Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $explicit }}
{{- add $drain (int .Values.shutdownGraceMarginSeconds) }}
{{- else if le (int $explicit) $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed BRIDGE_SHUTDOWN_TIMEOUT_SECONDS (%d): the pod would be killed before the bridge has drained and committed" (int $explicit) $drain) }}
{{- else }}
{{- int $explicit }}
{{- end }}
{{- end }}

{{/*
Highest replica count the chosen scaling mode can reach.
*/}}
{{- define "kafka-eventbridge.maxReplicas" -}}
{{- if .Values.keda.enabled }}
{{- if kindIs "invalid" .Values.keda.maxReplicaCount }}{{ int .Values.partitions }}{{ else }}{{ int .Values.keda.maxReplicaCount }}{{ end }}
{{- else if .Values.autoscaling.enabled }}
{{- int .Values.autoscaling.maxReplicas }}
{{- else }}
{{- int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
Render-time checks of combinations values.schema.json cannot express. Included by the
Deployment, so every install, upgrade and template run goes through them.
*/}}
{{- define "kafka-eventbridge.validate" -}}
{{- $config := .Values.config | default dict }}
{{- range $name := list "BRIDGE_KAFKA_BOOTSTRAP_SERVERS" "BRIDGE_KAFKA_TOPICS" }}
{{- if not (get $config $name) }}
{{- fail (printf "config.%s is required" $name) }}
{{- end }}
{{- end }}
{{- range $name, $value := $config }}
{{- /* The OIDC token endpoint is a URL, not a token. */}}
{{- if and (regexMatch "(PASSWORD|SECRET|TOKEN|KEY_PEM|USER_INFO)" $name) (not (hasSuffix "_TOKEN_ENDPOINT_URL" $name)) }}
{{- fail (printf "config.%s looks like a secret: put it in an existing Secret and reference it from secrets.env or secrets.envFrom" $name) }}
{{- end }}
{{- if hasKey $.Values.secrets.env $name }}
{{- fail (printf "%s is set both in config and in secrets.env" $name) }}
{{- end }}
{{- end }}
{{- if hasKey $config "BRIDGE_HTTP_PORT" }}
{{- fail "config.BRIDGE_HTTP_PORT: set containerPort instead (the probes and the Service use it)" }}
{{- end }}
{{- if include "kafka-eventbridge.mappingConfigMap" . }}
{{- if and .Values.mapping.routes .Values.mapping.existingConfigMap }}
{{- fail "mapping: set either routes or existingConfigMap, not both" }}
{{- end }}
{{- if get $config "BRIDGE_MAPPING_FILE" }}
{{- fail "config.BRIDGE_MAPPING_FILE: the chart sets it from mapping; remove it" }}
{{- end }}
{{- range $name, $value := $config }}
{{- if and $value (hasPrefix "BRIDGE_MAP_" $name) }}
{{- fail (printf "config.%s: the BRIDGE_MAP_* shortcut and a mapping file exclude each other" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled exclude each other: both would drive the same Deployment" }}
{{- end }}
{{- if and .Values.keda.enabled (le (int .Values.partitions) 0) }}
{{- fail "keda.enabled needs partitions: the number of partitions the consumer group reads (the ceiling for keda.maxReplicaCount)" }}
{{- end }}
{{- $max := include "kafka-eventbridge.maxReplicas" . | int }}
{{- if and (gt (int .Values.partitions) 0) (gt $max (int .Values.partitions)) }}
{{- fail (printf "at most %d replicas can be reached, above the %d partitions the group reads: the extra consumers would idle. Lower the replica ceiling (replicaCount, autoscaling.maxReplicas or keda.maxReplicaCount)" $max (int .Values.partitions)) }}
{{- end }}
{{- if .Values.keda.enabled }}
{{- if gt (int .Values.keda.minReplicaCount) $max }}
{{- fail (printf "keda.minReplicaCount (%d) is above keda.maxReplicaCount (%d)" (int .Values.keda.minReplicaCount) $max) }}
{{- end }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.targetCPUUtilizationPercentage (not (dig "requests" "cpu" "" (.Values.resources | default dict))) }}
{{- fail "autoscaling.targetCPUUtilizationPercentage needs resources.requests.cpu (utilisation is relative to the request)" }}
{{- end }}
{{- end }}
{{- if and .Values.serviceAccount.irsaRoleArn (not .Values.serviceAccount.create) }}
{{- fail "serviceAccount.irsaRoleArn needs serviceAccount.create=true; annotate your own ServiceAccount instead" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) }}
{{- fail "serviceMonitor.enabled needs service.enabled: the ServiceMonitor scrapes through the Service" }}
{{- end }}
{{- end }}

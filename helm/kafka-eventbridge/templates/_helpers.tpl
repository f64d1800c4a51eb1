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
The bridge's effective drain timeout in seconds (BRIDGE_SHUTDOWN_TIMEOUT_SECONDS from
extraEnv, else config, else 30), rounded up to a whole second.
*/}}
{{- define "kafka-eventbridge.shutdownTimeoutSeconds" -}}
{{- $raw := toString (dig "BRIDGE_SHUTDOWN_TIMEOUT_SECONDS" "30" (.Values.config | default dict) | default "30") }}
{{- /* extraEnv comes after config in the container's env, so its value wins there too. */}}
{{- range .Values.extraEnv }}
{{- if and (eq .name "BRIDGE_SHUTDOWN_TIMEOUT_SECONDS") (hasKey . "value") }}
{{- $raw = toString .value }}
{{- end }}
{{- end }}
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
{{- if hasKey $.Values.secrets.env "BRIDGE_SHUTDOWN_TIMEOUT_SECONDS" }}
{{- fail "secrets.env.BRIDGE_SHUTDOWN_TIMEOUT_SECONDS: the grace period is derived from it, so it must be readable: set it in config" }}
{{- end }}
{{- $secretLike := "(PASSWORD|SECRET|TOKEN|KEY_PEM|USER_INFO|OAUTHBEARER_CONFIG|JAAS|CREDENTIALS)" }}
{{- range $name, $value := $config }}
{{- /* The OIDC token endpoint is a URL, not a token. */}}
{{- if and (regexMatch $secretLike $name) (not (hasSuffix "_TOKEN_ENDPOINT_URL" $name)) }}
{{- fail (printf "config.%s looks like a secret: put it in an existing Secret and reference it from secrets.env or secrets.envFrom" $name) }}
{{- end }}
{{- if hasKey $.Values.secrets.env $name }}
{{- fail (printf "%s is set both in config and in secrets.env" $name) }}
{{- end }}
{{- end }}
{{- range $name, $value := include "kafka-eventbridge.roleEnv" . | fromYaml }}
{{- if hasKey $config $name }}
{{- fail (printf "config.%s: set it with the aws.role* values instead" $name) }}
{{- end }}
{{- if hasKey $.Values.secrets.env $name }}
{{- fail (printf "%s is set both in aws.role* and in secrets.env" $name) }}
{{- end }}
{{- end }}
{{- if and (not .Values.aws.roleArn) (or .Values.aws.roleExternalId .Values.aws.roleSessionName .Values.aws.roleDurationSeconds) }}
{{- fail "aws.roleExternalId, aws.roleSessionName and aws.roleDurationSeconds need aws.roleArn" }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if and (regexMatch $secretLike .name) (hasKey . "value") }}
{{- fail (printf "extraEnv %s looks like a secret: use valueFrom.secretKeyRef (or secrets.env) instead of a value" .name) }}
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

{{/*
The BRIDGE_AWS_ROLE_* variables from the aws.role* values (a YAML map; empty ones left out).
*/}}
{{- define "kafka-eventbridge.roleEnv" -}}
{{- $aws := .Values.aws }}
{{- $env := dict }}
{{- with $aws.roleArn }}{{ $_ := set $env "BRIDGE_AWS_ROLE_ARN" . }}{{ end }}
{{- with $aws.roleExternalId }}{{ $_ := set $env "BRIDGE_AWS_ROLE_EXTERNAL_ID" . }}{{ end }}
{{- with $aws.roleSessionName }}{{ $_ := set $env "BRIDGE_AWS_ROLE_SESSION_NAME" . }}{{ end }}
{{- with $aws.roleDurationSeconds }}{{ $_ := set $env "BRIDGE_AWS_ROLE_DURATION_SECONDS" (toString .) }}{{ end }}
{{- toYaml $env }}
{{- end }}

{{/*
checksum/config: a hash of everything the pods read besides the image. Values (config,
extraEnv, secret references, AWS region, mapping) and, at install/upgrade time, the data of
the Secrets and the existing ConfigMap they reference (lookup; empty under helm template).
Only the hash is rendered, never the data.
*/}}
{{- define "kafka-eventbridge.configChecksum" -}}
{{- $inputs := dict "config" .Values.config "extraEnv" .Values.extraEnv "secrets" .Values.secrets "aws" .Values.aws "mapping" .Values.mapping "containerPort" .Values.containerPort }}
{{- with .Values.mapping.existingConfigMap }}
{{- $found := lookup "v1" "ConfigMap" $.Release.Namespace . | default dict }}
{{- $_ := set $inputs "existingConfigMapData" (get $found "data" | default dict) }}
{{- end }}
{{- $secretNames := list }}
{{- range .Values.secrets.envFrom }}{{ $secretNames = append $secretNames . }}{{ end }}
{{- range $_, $ref := .Values.secrets.env }}{{ $secretNames = append $secretNames $ref.name }}{{ end }}
{{- $secretData := dict }}
{{- range $name := $secretNames | uniq }}
{{- $found := lookup "v1" "Secret" $.Release.Namespace $name | default dict }}
{{- $_ := set $secretData $name (get $found "data" | default dict) }}
{{- end }}
{{- $_ := set $inputs "secretData" $secretData }}
{{- toJson $inputs | sha256sum }}
{{- end }}

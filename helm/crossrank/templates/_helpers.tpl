{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "crossrank.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name. */}}
{{- define "crossrank.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "crossrank.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crossrank.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "crossrank.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "crossrank.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "crossrank.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "crossrank.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "crossrank.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "crossrank.adminSecretName" -}}
{{- default (printf "%s-admin" (include "crossrank.fullname" .)) .Values.adminToken.existingSecret }}
{{- end }}

{{/* The port the probes use: the plaintext health port when the gRPC port speaks TLS. */}}
{{- define "crossrank.probePort" -}}
{{- if .Values.tls.enabled }}{{ .Values.server.healthPort }}{{ else }}{{ .Values.server.grpcPort }}{{ end }}
{{- end }}

{{/* The Secret holding the API keys file (apiKeys); empty when no keys are required. */}}
{{- define "crossrank.apiKeysSecret" -}}
{{- if .Values.apiKeys.existingSecret }}{{ .Values.apiKeys.existingSecret }}
{{- else if .Values.apiKeys.key }}{{ include "crossrank.fullname" . }}-api-keys
{{- end }}
{{- end }}

{{/* True when any model runs on CUDA. */}}
{{- define "crossrank.usesCuda" -}}
{{- range .Values.models }}{{ if hasPrefix "cuda" (.device | default "cpu") }}true{{ end }}{{ end }}
{{- end }}

{{/* The server's TOML config (see src/config.rs). */}}
{{- define "crossrank.config" -}}
[limits]
max_pairs_per_request = {{ .Values.limits.maxPairsPerRequest | int }}
max_text_bytes = {{ .Values.limits.maxTextBytes | int }}
max_id_bytes = {{ .Values.limits.maxIdBytes | int }}
max_tokenizing_bytes = {{ .Values.limits.maxTokenizingBytes | int64 }}
max_stream_in_flight = {{ .Values.limits.maxStreamInFlight | int }}
stream_idle_timeout_secs = {{ .Values.limits.streamIdleTimeoutSecs | int }}
max_priority = {{ .Values.limits.maxPriority | int }}
{{- range .Values.models }}

[[models]]
name = {{ .name | quote }}
path = {{ .path | quote }}
device = {{ .device | default "cpu" | quote }}
replicas = {{ .replicas | default 1 | int }}
{{- if .dtype }}
dtype = {{ .dtype | quote }}
{{- end }}
{{- if .maxLength }}
max_length = {{ .maxLength | int }}
{{- end }}
max_batch_tokens = {{ .maxBatchTokens | default 16384 | int }}
{{- if .maxBatchPairs }}
max_batch_pairs = {{ .maxBatchPairs | int }}
{{- end }}
max_wait_ms = {{ .maxWaitMs | default 2 | int }}
max_queue_pairs = {{ .maxQueuePairs | default 4096 | int }}
{{- end }}
{{- end }}

{{/* Hugging Face cache, endpoint and token, for the server and the init container. */}}
{{- define "crossrank.hubEnv" -}}
- name: HF_HOME
  value: {{ .Values.hub.home | quote }}
{{- with .Values.hub.endpoint }}
- name: HF_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.hub.tokenSecret }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.hub.tokenSecretKey }}
{{- end }}
{{- end }}

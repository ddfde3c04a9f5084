{{/* vim: set filetype=mustache: */}}

{{/* The services this chart deploys, in order. */}}
{{- define "crypto-watcher.components" -}}
producer processor notifier
{{- end }}

{{/* Chart name, truncated to 63 characters (the DNS label limit). */}}
{{- define "crypto-watcher.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or <release> when it already contains the chart name.
Truncated to 52 characters so "-<component>" suffixes still fit in 63.
*/}}
{{- define "crypto-watcher.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's objects: <fullname>-<component>. Call with (dict "root" $ "component" "producer"). */}}
{{- define "crypto-watcher.componentName" -}}
{{- printf "%s-%s" (include "crypto-watcher.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "crypto-watcher.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "crypto-watcher.labels" -}}
helm.sh/chart: {{ include "crypto-watcher.chart" . }}
{{ include "crypto-watcher.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: crypto-watcher
{{- end }}

{{/* Selector labels shared by every object of the release. */}}
{{- define "crypto-watcher.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crypto-watcher.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component's objects. Call with (dict "root" $ "component" "producer"). */}}
{{- define "crypto-watcher.componentLabels" -}}
{{ include "crypto-watcher.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component's pods. */}}
{{- define "crypto-watcher.componentSelectorLabels" -}}
{{ include "crypto-watcher.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "crypto-watcher.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "crypto-watcher.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest when a digest is given, else repository:tag. A chart
from a checkout has no repository (only a release knows the owner part): say what to set. */}}
{{- define "crypto-watcher.image" -}}
{{- $repository := required "image.repository is not set: a release pushes the image to ghcr.io/<owner>/crypto-watcher (<owner>: whoever hosts the repository) and its chart, oci://ghcr.io/<owner>/charts/crypto-watcher, has it filled in; with the chart from a checkout pass --set image.repository=ghcr.io/<owner>/crypto-watcher, or the repository of an image built from the Dockerfile" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Ports the notifier's NetworkPolicy lets it reach, as a JSON list: networkPolicy.notifierPorts
plus, for each URL in secrets.notifyUrls, its own port, else its scheme's as apprise uses it
(mailto/mailtos: 587 STARTTLS and 465 TLS, both since a URL's mode or provider picks one; json,
xml, form: 80; every other service: HTTPS). URLs in an existing Secret cannot be read here: then
networkPolicy.notifierPorts, or HTTPS and both SMTP submission ports when it is empty. The URLs
are secret: only their ports leave this template. */}}
{{- define "crypto-watcher.notifierPorts" -}}
{{- $ports := list }}
{{- range .Values.networkPolicy.notifierPorts }}{{ $ports = append $ports (int .) }}{{ end }}
{{- if .Values.secrets.existingSecret }}
{{- if not $ports }}{{ $ports = list 443 465 587 }}{{ end }}
{{- else }}
{{- range $target := regexFindAll "[A-Za-z][A-Za-z0-9+.-]*://[^/?#,\\s]*" (.Values.secrets.notifyUrls | default "") -1 }}
{{- $scheme := lower (regexReplaceAll "://.*$" $target "") }}
{{- $hostPort := regexReplaceAll "^.*@" (regexReplaceAll "^[^:]*://" $target "") "" }}
{{- $port := trimPrefix ":" (regexFind ":[0-9]+$" $hostPort) }}
{{- if $port }}{{ $ports = append $ports (atoi $port) }}
{{- else if has $scheme (list "mailto" "mailtos") }}{{ $ports = concat $ports (list 587 465) }}
{{- else if has $scheme (list "json" "xml" "form") }}{{ $ports = append $ports 80 }}
{{- else }}{{ $ports = append $ports 443 }}
{{- end }}
{{- end }}
{{- end }}
{{- uniq $ports | toJson }}
{{- end }}

{{/* Name of the Secret the pods read: existingSecret, or the one this chart creates. */}}
{{- define "crypto-watcher.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "crypto-watcher.fullname" . }}
{{- end }}
{{- end }}

{{/* True ("true") when the chart creates its own Secret. */}}
{{- define "crypto-watcher.createSecret" -}}
{{- if not .Values.secrets.existingSecret }}true{{ end }}
{{- end }}

{{/*
An env var read from the Secret. optional: a key that is absent leaves the variable unset, so one
Secret layout serves every service and existingSecret need only hold the keys in use.
Call with (dict "root" $ "name" "CW_INFLUX_TOKEN" "key" "influxToken").
*/}}
{{- define "crypto-watcher.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "crypto-watcher.secretName" .root }}
      key: {{ index .root.Values.secrets.keys .key }}
      optional: true
{{- end }}

{{/*
Checks the values cannot express in values.schema.json (relations between two values).
Included by every template that depends on them, so `helm template` and `helm install` fail early
with a message saying what to change.
*/}}
{{- define "crypto-watcher.validate" -}}
{{- $partitions := int .Values.kafka.ticksPartitions }}
{{- $p := .Values.processor }}
{{- if $p.enabled }}
{{- if $p.autoscaling.enabled }}
{{- if gt (int $p.autoscaling.maxReplicas) $partitions }}
{{- fail (printf "processor.autoscaling.maxReplicas (%d) exceeds kafka.ticksPartitions (%d): a consumer group uses at most one member per partition, so the extra replicas would sit idle. Lower maxReplicas or add partitions to the ticks topic and raise kafka.ticksPartitions." (int $p.autoscaling.maxReplicas) $partitions) }}
{{- end }}
{{- if gt (int $p.autoscaling.minReplicas) (int $p.autoscaling.maxReplicas) }}
{{- fail (printf "processor.autoscaling.minReplicas (%d) exceeds processor.autoscaling.maxReplicas (%d)." (int $p.autoscaling.minReplicas) (int $p.autoscaling.maxReplicas)) }}
{{- end }}
{{- else if gt (int $p.replicaCount) $partitions }}
{{- fail (printf "processor.replicaCount (%d) exceeds kafka.ticksPartitions (%d): a consumer group uses at most one member per partition. Lower replicaCount or raise the partition count." (int $p.replicaCount) $partitions) }}
{{- end }}
{{- end }}
{{- if .Values.secrets.existingSecret }}
{{- range $k := list "coingeckoApiKey" "influxToken" "influxPassword" "notifyUrls" }}
{{- if index $.Values.secrets $k }}
{{- fail (printf "secrets.%s is set together with secrets.existingSecret: put the value in the existing Secret (key %q) and leave secrets.%s empty." $k (index $.Values.secrets.keys $k) $k) }}
{{- end }}
{{- end }}
{{- else }}
{{- if and .Values.producer.enabled (eq .Values.producer.source "coingecko") (ne .Values.producer.coingeckoPlan "public") (not .Values.secrets.coingeckoApiKey) }}
{{- fail (printf "producer.coingeckoPlan is %q, which needs an API key: set secrets.coingeckoApiKey (e.g. --set-string secrets.coingeckoApiKey=...) or secrets.existingSecret." .Values.producer.coingeckoPlan) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level fields shared by every Deployment. Call with (dict "root" $ "component" "producer" "values" $.Values.producer). */}}
{{- define "crypto-watcher.podCommon" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "crypto-watcher.serviceAccountName" $root }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .values.terminationGracePeriodSeconds }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range .values.topologySpreadConstraints }}
  - {{- toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" (include "crypto-watcher.componentSelectorLabels" $ | fromYaml)))) | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

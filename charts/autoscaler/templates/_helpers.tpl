{{/*
Names. The chart replaces metrics-server, so its objects keep metrics-server's names: the
component name is "metrics-server", and release "metrics-server" (or any release name that
contains it) is used as is.
*/}}
{{- define "autoscaler.name" -}}
{{- default "metrics-server" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "autoscaler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "autoscaler.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod selector: the same label metrics-server's manifests select on. */}}
{{- define "autoscaler.selectorLabels" -}}
k8s-app: {{ include "autoscaler.fullname" . }}
{{- end }}

{{/*
Metadata labels: the selector label, the labels of manifests/ (name and component), and the
labels Helm's tooling expects (chart, instance, version, managed-by).
*/}}
{{- define "autoscaler.labels" -}}
{{ include "autoscaler.selectorLabels" . }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/component: metrics-server
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "autoscaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "autoscaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "autoscaler.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The controller component runs (and needs its RBAC) unless controller.mode is off. */}}
{{- define "autoscaler.controllerEnabled" -}}
{{- if ne .Values.controller.mode "off" }}true{{ end }}
{{- end }}

{{/* Bad combinations fail the render with the reason, instead of producing a broken install. */}}
{{- define "autoscaler.validate" -}}
{{- if not (has .Values.controller.mode (list "active" "dry-run" "off")) }}
{{- fail (printf "controller.mode must be active, dry-run or off, not %q" .Values.controller.mode) }}
{{- end }}
{{- if not (has .Values.tls.type (list "metrics-server" "existingSecret" "cert-manager")) }}
{{- fail (printf "tls.type must be metrics-server, existingSecret or cert-manager, not %q" .Values.tls.type) }}
{{- end }}
{{- if and (eq .Values.tls.type "existingSecret") (not .Values.tls.existingSecret.name) }}
{{- fail "tls.type=existingSecret needs tls.existingSecret.name" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (eq .Values.controller.mode "active") (not .Values.controller.leaderElection.enabled) }}
{{- fail "replicas > 1 with controller.mode=active needs controller.leaderElection.enabled: every replica would reconcile every HPA" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.enabled (an unauthenticated /metrics, as in metrics-server's chart)" }}
{{- end }}
{{- end }}

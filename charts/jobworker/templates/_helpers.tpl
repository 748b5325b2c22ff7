{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "jobworker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified release name (<release>-<chart>, or <release> when it already contains the chart name).
*/}}
{{- define "jobworker.fullname" -}}
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
Name of the operator's namespaced objects (Deployment, Service, ...): <fullname>-operator.
*/}}
{{- define "jobworker.operatorName" -}}
{{- $full := include "jobworker.fullname" . }}
{{- if hasSuffix "-operator" $full }}
{{- $full }}
{{- else }}
{{- printf "%s-operator" ($full | trunc 54 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/*
Name of cluster-scoped objects (ClusterRole, ClusterRoleBinding). It includes the release namespace so two
releases with the same name in different namespaces do not collide.
*/}}
{{- define "jobworker.clusterName" -}}
{{- printf "%s-%s" (include "jobworker.operatorName" .) .Release.Namespace | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/*
Chart label value: <chart>-<version>.
*/}}
{{- define "jobworker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of the operator. The component label keeps them disjoint from the pool children's labels
(app.kubernetes.io/component=worker|scheduler|...).
*/}}
{{- define "jobworker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobworker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Common labels.
*/}}
{{- define "jobworker.labels" -}}
helm.sh/chart: {{ include "jobworker.chart" . }}
{{ include "jobworker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobworker
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "jobworker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jobworker.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image reference: repository@digest, or repository:tag (tag defaults to appVersion).
*/}}
{{- define "jobworker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Whether the prometheus-operator API is served by the cluster (or passed with --api-versions).
*/}}
{{- define "jobworker.hasMonitoringAPI" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{/*
RBAC rules for namespaced resources (docs/contracts.md). Keep this list identical to the contract table. With
queueStats.source workers the operator gets no Secret: list on EndpointSlices replaces get on Secrets.
*/}}
{{- define "jobworker.namespacedRules" -}}
- apiGroups: ["jobworker.dev"]
  resources: ["jobworkerpools"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["jobworker.dev"]
  resources: ["jobworkerpools/status"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- if eq .Values.queueStats.source "workers" }}
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
{{- else }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}

{{/*
RBAC rules for cluster-scoped resources kopf scans; always in a ClusterRole.
*/}}
{{- define "jobworker.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}

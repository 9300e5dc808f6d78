{{/*
Names. The full name is the release's name when it already says the chart's (release
`sandbox-serve` gives `sandbox-serve`), else RELEASE-sandbox-serve; every object is named from
it, so two releases in one cluster (whose ClusterRoles are cluster-wide) never collide.
*/}}
{{- define "sandbox-serve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The ClusterRole serve binds in each sandbox namespace it creates. */}}
{{- define "sandbox-serve.inSandboxRole" -}}
{{ include "sandbox-serve.fullname" . }}-in-sandbox
{{- end -}}

{{- define "sandbox-serve.reaper" -}}
{{ include "sandbox-serve.fullname" . }}-reaper
{{- end -}}

{{/* Labels on every object; the selector labels pick serve's pods only. */}}
{{- define "sandbox-serve.labels" -}}
app.kubernetes.io/name: {{ include "sandbox-serve.fullname" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | replace "+" "_" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sandbox-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sandbox-serve.fullname" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: serve
{{- end -}}

{{- define "sandbox-serve.reaperSelectorLabels" -}}
app.kubernetes.io/name: {{ include "sandbox-serve.fullname" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: reaper
{{- end -}}

{{/* REPOSITORY:TAG or REPOSITORY@DIGEST; the tag defaults to the appVersion (VERSION-SHA). */}}
{{- define "sandbox-serve.image" -}}
{{- $tag := .Values.image.tag | default (.Chart.AppVersion | replace "+" "-") -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret an entry of .Values.secrets names: its own `name`, else secrets.name, else the full name. */}}
{{- define "sandbox-serve.secretName" -}}
{{- .entry.name | default .root.Values.secrets.name | default (include "sandbox-serve.fullname" .root) -}}
{{- end -}}

{{/* The ConfigMap key of an inline product file: its path, `/` (not allowed in a key) as `__`. */}}
{{- define "sandbox-serve.productKey" -}}
{{- . | replace "/" "__" -}}
{{- end -}}

{{/* The product's ConfigMap: the chart's own (inline config), else the one named, else RELEASE-product. */}}
{{- define "sandbox-serve.productConfigMap" -}}
{{- $own := printf "%s-product" (include "sandbox-serve.fullname" .) -}}
{{- if .Values.product.config -}}
{{- $own -}}
{{- else -}}
{{- .Values.product.existingConfigMap | default $own -}}
{{- end -}}
{{- end -}}

{{/*
API versions older servers take: PodDisruptionBudget and CronJob became v1 in 1.21. Decided by
the server's version (`helm template` without a cluster assumes a current one).
*/}}
{{- define "sandbox-serve.v1From121" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}v1{{- else -}}v1beta1{{- end -}}
{{- end -}}

{{- define "sandbox-serve.pdbApiVersion" -}}
policy/{{ include "sandbox-serve.v1From121" . }}
{{- end -}}

{{- define "sandbox-serve.cronJobApiVersion" -}}
batch/{{ include "sandbox-serve.v1From121" . }}
{{- end -}}

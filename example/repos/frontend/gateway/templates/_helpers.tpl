{{/*
The name of every object: the release name, which is the service name (gateway).
*/}}
{{- define "gateway.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels. `app` only, as the Handlebars version had: a Deployment's selector is immutable,
so an existing sandbox moves from the template to the chart without recreating it.
*/}}
{{- define "gateway.selectorLabels" -}}
app: {{ include "gateway.name" . }}
{{- end -}}

{{/*
Labels of every object.
*/}}
{{- define "gateway.labels" -}}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: frontend
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
Labels of hook and test pods: without the selector label, or the Service would count a running
hook's pod among its endpoints and send it traffic it does not serve.
*/}}
{{- define "gateway.hookLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: hook
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
A value `sandbox` injects under global.sandbox and the chart cannot work without, by its dotted
path: (list $ "repo.sha"). Fails the render with a clear message when it is missing.
*/}}
{{- define "gateway.sandbox" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- $v := $root.Values.global.sandbox -}}
{{- range splitList "." $path -}}
{{- if kindIs "map" $v -}}{{- $v = get $v . -}}{{- else -}}{{- $v = "" -}}{{- end -}}
{{- end -}}
{{- required (printf "chart %s: global.sandbox.%s is required (`sandbox` injects it: the service and the checked-out repository)" $root.Chart.Name $path) $v -}}
{{- end -}}

{{/*
The environment variable holding this service's host ("host") or port ("port"):
global.sandbox.service says; else Kubernetes' own naming (GATEWAY_SERVICE_HOST).
Called with (list $ "host").
*/}}
{{- define "gateway.ownEnv" -}}
{{- $root := index . 0 -}}
{{- $what := index . 1 -}}
{{- $service := $root.Values.global.sandbox.service | default dict -}}
{{- $derived := printf "%s_SERVICE_%s" ($root.Release.Name | upper | replace "-" "_") ($what | upper) -}}
{{- get $service (printf "%s_env" $what) | default $derived -}}
{{- end -}}

{{/*
The name of the subchart's ConfigMap (charts/upstreams renders it as RELEASE-upstreams).
*/}}
{{- define "gateway.upstreamsConfigMap" -}}
{{- printf "%s-upstreams" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
A digest of the chart's own values, the subchart's included, without the globals (Helm copies
them into every subchart's values too): the branch and the commit are in the environment.
*/}}
{{- define "gateway.valuesChecksum" -}}
{{- $values := omit .Values "global" -}}
{{- range $key, $value := $values -}}
{{- if and (kindIs "map" $value) (hasKey $value "global") -}}
{{- $_ := set $values $key (omit $value "global") -}}
{{- end -}}
{{- end -}}
{{- toYaml $values | sha256sum | trunc 12 -}}
{{- end -}}

{{/*
Pod settings every pod of the chart shares: the example finds its peers through Service
environment variables, not DNS (the cluster has none).
*/}}
{{- define "gateway.podDefaults" -}}
dnsPolicy: Default
enableServiceLinks: true
{{- end -}}

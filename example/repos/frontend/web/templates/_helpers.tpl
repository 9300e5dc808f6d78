{{/*
The name of every object: the release name, which is the service name (web).
*/}}
{{- define "web.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels. `app` only, as the Handlebars version had: a Deployment's selector is immutable,
so an existing sandbox moves from the template to the chart without recreating it.
*/}}
{{- define "web.selectorLabels" -}}
app: {{ include "web.name" . }}
{{- end -}}

{{/*
Labels of every object.
*/}}
{{- define "web.labels" -}}
{{ include "web.selectorLabels" . }}
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
{{- define "web.hookLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: hook
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
A value `sandbox` injects under global.sandbox and the chart cannot work without, by its dotted
path: (list $ "repo.sha"). Fails the render with a clear message when it is missing.
*/}}
{{- define "web.sandbox" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- $v := $root.Values.global.sandbox -}}
{{- range splitList "." $path -}}
{{- if kindIs "map" $v -}}{{- $v = get $v . -}}{{- else -}}{{- $v = "" -}}{{- end -}}
{{- end -}}
{{- required (printf "chart %s: global.sandbox.%s is required (`sandbox` injects it: the service and the checked-out repository)" $root.Chart.Name $path) $v -}}
{{- end -}}

{{/*
The environment variable holding a service's host (port, with "port"): global.sandbox.services
says; else Kubernetes' own naming (NAME_SERVICE_HOST). Called with (list $ "api" "host").
*/}}
{{- define "web.serviceEnv" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $what := index . 2 -}}
{{- $services := $root.Values.global.sandbox.services | default dict -}}
{{- $svc := get $services $name | default dict -}}
{{- $derived := printf "%s_SERVICE_%s" ($name | upper | replace "-" "_") ($what | upper) -}}
{{- get $svc (printf "%s_env" $what) | default $derived -}}
{{- end -}}

{{/*
Pod settings every pod of the chart shares: the example finds its peers through Service
environment variables, not DNS (the cluster has none).
*/}}
{{- define "web.podDefaults" -}}
dnsPolicy: Default
enableServiceLinks: true
{{- end -}}

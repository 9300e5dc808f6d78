{{/*
The ConfigMap's name: the (parent's) release name and "-upstreams".
*/}}
{{- define "upstreams.name" -}}
{{- printf "%s-upstreams" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The names, one a line, as environment-variable prefixes (upper case, "-" as "_").
*/}}
{{- define "upstreams.lines" -}}
{{- $names := list -}}
{{- range .Values.names -}}
{{- $names = append $names (. | toString | upper | replace "-" "_") -}}
{{- end -}}
{{- $names | uniq | join "\n" -}}
{{- end -}}

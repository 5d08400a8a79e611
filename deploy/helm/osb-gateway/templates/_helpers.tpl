{{/* Names and labels, as the kustomize manifests have them (name, instance), plus Helm's. */}}

{{- define "osb-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "osb-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "osb-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "osb-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "osb-gateway.labels" -}}
{{ include "osb-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "osb-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "osb-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "osb-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where the Secret files are mounted (the *_file keys of gateway.yaml name files here). */}}
{{- define "osb-gateway.secretsDir" -}}/var/run/secrets/osb-gateway{{- end -}}

{{/* The store kind, checked. */}}
{{- define "osb-gateway.storeKind" -}}
{{- $kind := .Values.store.kind -}}
{{- if not (has $kind (list "embedded" "postgres")) -}}
{{- fail (printf "store.kind: expected embedded or postgres, got %q" (toString $kind)) -}}
{{- end -}}
{{- $kind -}}
{{- end -}}

{{/*
gateway.yaml: .Values.config, with the listen addresses from .Values.ports and tls from .Values.tls.
The store is not in it: the Deployment sets OSB_GATEWAY__STORE__* (as the kustomize overlays do).
*/}}
{{- define "osb-gateway.config" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- if hasKey $config "store" -}}
{{- fail "config.store: set the store with store.kind and store.* (the chart passes it as OSB_GATEWAY__STORE__* variables)" -}}
{{- end -}}
{{- if and (hasKey $config "tls") (not .Values.tls.enabled) -}}
{{- fail "config.tls: set tls.enabled and tls.secretName instead (the chart mounts the files and names them)" -}}
{{- end -}}
{{- $dir := include "osb-gateway.secretsDir" . -}}
{{- $_ := set $config "listen" (printf "0.0.0.0:%d" (int .Values.ports.osb)) -}}
{{- $admin := get $config "admin" | default dict -}}
{{- $_ := set $admin "listen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) -}}
{{- $_ := set $config "admin" $admin -}}
{{- if .Values.tls.enabled -}}
{{- $tls := dict "cert_file" (printf "%s/listener-tls.crt" $dir) "key_file" (printf "%s/listener-tls.key" $dir) -}}
{{- if .Values.tls.clientCA.enabled -}}
{{- $_ := set $tls "client_ca_file" (printf "%s/listener-client-ca.crt" $dir) -}}
{{- end -}}
{{- $_ := set $config "tls" $tls -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

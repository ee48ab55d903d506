{{- define "portcullis.name" -}}{{ .Release.Name }}{{- end -}}

{{- define "portcullis.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ include "portcullis.chart" . }}
app.kubernetes.io/name: portcullis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "portcullis.selector" -}}
app.kubernetes.io/name: portcullis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.tlsSecret" -}}
{{- if .Values.tls.existingSecret }}{{ .Values.tls.existingSecret }}{{ else }}{{ include "portcullis.name" . }}-tls{{ end -}}
{{- end -}}

{{- define "portcullis.policiesConfigMap" -}}
{{- if .Values.policies.existingConfigMap }}{{ .Values.policies.existingConfigMap }}{{ else }}{{ include "portcullis.name" . }}-policies{{ end -}}
{{- end -}}

{{- define "portcullis.keysConfigMap" -}}
{{- if .Values.policies.existingKeysConfigMap }}{{ .Values.policies.existingKeysConfigMap }}{{ else }}{{ include "portcullis.name" . }}-policy-keys{{ end -}}
{{- end -}}

{{/* The image, pinned by digest when image.digest is set. */}}
{{- define "portcullis.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{/* cert-manager issues the certificates and injects the CA. */}}
{{- define "portcullis.certManager" -}}
{{- if and .Values.tls.certManager (not .Values.tls.existingSecret) }}true{{ end -}}
{{- end -}}

{{/*
The webhooks must never be rendered without a source for their caBundle: the API server could
not reach a webhook it cannot verify, and with failurePolicy Fail that blocks the cluster.
*/}}
{{- define "portcullis.validate" -}}
{{- if include "portcullis.certManager" . }}
{{- if .Values.tls.caBundle }}
{{- fail "portcullis: tls.caBundle is set but cert-manager injects the CA (tls.certManager=true): unset tls.caBundle, or set tls.certManager=false with tls.existingSecret" }}
{{- end }}
{{- else }}
{{- if not (and .Values.tls.existingSecret .Values.tls.caBundle) }}
{{- fail "portcullis: no caBundle source for the webhooks. Set tls.certManager=true (cert-manager issues and injects the CA), or give tls.existingSecret (a kubernetes.io/tls Secret) AND tls.caBundle (base64 PEM of its CA, e.g. from `portcullis certs generate`)" }}
{{- end }}
{{- if not (contains "-----BEGIN CERTIFICATE-----" (b64dec .Values.tls.caBundle)) }}
{{- fail "portcullis: tls.caBundle is not base64 of a PEM certificate (use `base64 -w0 ca.crt`, or the line `portcullis certs generate` prints)" }}
{{- end }}
{{- end }}
{{- if and .Values.policies.gitSync.enabled (not .Values.policies.gitSync.repo) }}
{{- fail "portcullis: policies.gitSync.enabled needs policies.gitSync.repo" }}
{{- end }}
{{- if and .Values.policies.gitSync.enabled (or .Values.policies.existingConfigMap .Values.policies.files) }}
{{- fail "portcullis: policies come from one source: policies.gitSync, policies.existingConfigMap or policies.files" }}
{{- end }}
{{- end -}}

{{/* Namespaces the webhooks never see: the release's own, the control plane's, and opted-out ones. */}}
{{- define "portcullis.namespaceSelector" -}}
{{- $excluded := concat (list .Release.Namespace "kube-system" "kube-node-lease") .Values.webhook.excludeNamespaces | uniq -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{- range $excluded }}
        - {{ . | quote }}
      {{- end }}
    - key: {{ .Values.webhook.ignoreLabel }}
      operator: NotIn
      values: ["true"]
{{- end -}}

{{- define "portcullis.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "portcullis.name" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
  {{- if not (include "portcullis.certManager" .root) }}
  caBundle: {{ .root.Values.tls.caBundle }}
  {{- end }}
{{- end -}}

{{- define "portcullis.injectAnnotation" -}}
{{- if include "portcullis.certManager" . }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "portcullis.name" . }}
{{- end }}
{{- end -}}

{{/* Workload kinds whose pod templates carry images. */}}
{{- define "portcullis.workloadRules" -}}
- apiGroups: [""]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: [pods, {{ if .ephemeral }}pods/ephemeralcontainers, {{ end }}replicationcontrollers, podtemplates]
- apiGroups: [apps]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: [deployments, replicasets, statefulsets, daemonsets]
- apiGroups: [batch]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: [jobs, cronjobs]
{{- end -}}

{{/* Requests that carry nothing to check: an object on its way out (finalizer removal). */}}
{{- define "portcullis.matchConditions" -}}
matchConditions:
  # An update of an object being deleted whose spec is unchanged (finalizer removal) is never
  # sent, so deletions go through while portcullis is down. One that changes the spec is sent:
  # it could swap an image in.
  - name: not-a-deletion-leaving-the-spec-unchanged
    expression: "!(request.operation == 'UPDATE' && has(object.metadata.deletionTimestamp) && has(object.spec) && has(oldObject.spec) && object.spec == oldObject.spec)"
{{- end -}}

{{- define "portcullis.needsApiAccess" -}}
{{- if or .Values.imagePullSecrets .Values.rbac.secretRefs }}true{{ end -}}
{{- end -}}

{{/* The policy directory the server reads. */}}
{{- define "portcullis.policiesPath" -}}
{{- if .Values.policies.gitSync.enabled -}}
/etc/portcullis/policies/current/{{ .Values.policies.gitSync.subPath | trimPrefix "/" }}
{{- else -}}
/etc/portcullis/policies
{{- end -}}
{{- end -}}

{{/* Key files placed under keys/ beside the policies (a YAML list). */}}
{{- define "portcullis.keyNames" -}}
{{- if .Values.policies.existingKeysConfigMap -}}
{{ toYaml .Values.policies.existingKeys }}
{{- else -}}
{{ keys .Values.policies.keys | sortAlpha | toYaml }}
{{- end -}}
{{- end -}}

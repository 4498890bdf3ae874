{{- define "modelplane.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelplane.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selectorLabels takes (list $ "component") */}}
{{- define "modelplane.selectorLabels" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "modelplane.secretName" -}}
{{- default (printf "%s-secrets" (include "modelplane.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "modelplane.databaseSecretName" -}}
{{- default (printf "%s-database" (include "modelplane.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{- define "modelplane.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "modelplane.apiURL" -}}
http://{{ include "modelplane.fullname" . }}-api.{{ .Release.Namespace }}.svc:{{ .Values.api.service.port }}
{{- end -}}

{{/* The settings every control-plane process shares. */}}
{{- define "modelplane.controlEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "modelplane.databaseSecretName" . }}
      key: database-url
- name: TEMPORAL_ADDRESS
  value: {{ .Values.temporal.address | quote }}
- name: TEMPORAL_NAMESPACE
  value: {{ .Values.temporal.namespace | quote }}
- name: MODELPLANE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: MODELPLANE_METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "modelplane.secretName" . }}
      key: metrics-token
      optional: true
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "modelplane.secretFilesEnv" -}}
- name: MODELPLANE_NODE_TOKEN_FILE
  value: /run/modelplane/node-token
- name: MODELPLANE_SECRETS_KEY_FILE
  value: /run/modelplane/secrets-key
- name: MODELPLANE_BLOB_DIR
  value: /var/lib/modelplane/blobs
{{- end -}}

{{- define "modelplane.secretFilesVolumes" -}}
- name: secrets
  secret:
    secretName: {{ include "modelplane.secretName" . }}
    defaultMode: 0440
    items:
      - {key: node-token, path: node-token}
      - {key: secrets-key, path: secrets-key}
- name: blobs
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-blobs" (include "modelplane.fullname" .)) .Values.blobs.existingClaim }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "modelplane.secretFilesMounts" -}}
- {name: secrets, mountPath: /run/modelplane, readOnly: true}
- {name: blobs, mountPath: /var/lib/modelplane/blobs}
- {name: tmp, mountPath: /tmp}
{{- end -}}

{{/* pdb takes (list $ "component" .Values.component.pdb) */}}
{{- define "modelplane.pdb" -}}
{{- $ := index . 0 -}}
{{- $c := index . 1 -}}
{{- $pdb := index . 2 -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "modelplane.fullname" $ }}-{{ $c }}
  labels:
    {{- include "modelplane.labels" $ | nindent 4 }}
spec:
  {{- if hasKey $pdb "minAvailable" }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "modelplane.selectorLabels" (list $ $c) | nindent 6 }}
{{- end -}}

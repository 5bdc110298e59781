{{/* Names: <release>-skysift, or the release name alone when it already contains "skysift". */}}
{{- define "skysift.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "skysift.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's object name; at most 52 characters so CronJob names leave room for Job suffixes. */}}
{{- define "skysift.componentName" -}}
{{- printf "%s-%s" (include "skysift.fullname" .root) .component | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "skysift.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "skysift.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is given (immutable), else repository:tag. */}}
{{- define "skysift.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/). */}}
{{- define "skysift.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "skysift.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: skysift
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A pod template's labels: the object's labels and podLabels (the schema keeps the chart's own keys out). */}}
{{- define "skysift.podLabels" -}}
{{- include "skysift.labels" . }}
{{- range $key, $value := .root.Values.podLabels }}
{{- if not (hasKey $.root.Values.commonLabels $key) }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "skysift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "skysift.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The label the services' NetworkPolicy admits: the app and the CronJobs' pods carry it. */}}
{{- define "skysift.clientLabel" -}}
skysift.io/grpc-client: "true"
{{- end }}

{{- define "skysift.bucket" -}}
{{- regexReplaceAll "^s3://([^/]+).*$" .Values.settings.storeUrl "${1}" }}
{{- end }}

{{- define "skysift.s3EndpointUrl" -}}
{{- if .Values.settings.s3EndpointUrl }}
{{- .Values.settings.s3EndpointUrl }}
{{- else if .Values.bundledS3.enabled }}
{{- printf "http://%s:8333" (include "skysift.componentName" (dict "root" . "component" "s3")) }}
{{- end }}
{{- end }}

{{- define "skysift.mlflowTrackingUri" -}}
{{- if and .Values.settings.mlflowTrackingUri .Values.bundledMlflow.enabled }}
{{- fail "settings.mlflowTrackingUri is set and bundledMlflow.enabled is true: use one MLflow (set bundledMlflow.enabled=false for an existing server)" }}
{{- else if .Values.settings.mlflowTrackingUri }}
{{- .Values.settings.mlflowTrackingUri }}
{{- else if .Values.bundledMlflow.enabled }}
{{- printf "http://%s:%d" (include "skysift.componentName" (dict "root" . "component" "mlflow")) (int .Values.bundledMlflow.port) }}
{{- else }}
{{- fail "settings.mlflowTrackingUri is empty and bundledMlflow.enabled is false: set one of them" }}
{{- end }}
{{- end }}

{{/*
Each secret: the file name pydantic-settings reads in SKYSIFT_SECRETS_DIR (the variable's name, lower case)
and the components that need it. A component never gets a secret it does not use.
*/}}
{{- define "skysift.secretSpecs" -}}
s3AccessKeyId: {file: skysift_s3_access_key_id, components: [ingest, enrichment, features, inference, trainer, app, backfill]}
s3SecretAccessKey: {file: skysift_s3_secret_access_key, components: [ingest, enrichment, features, inference, trainer, app, backfill]}
kafkaSaslPassword: {file: skysift_kafka_sasl_password, components: [ingest]}
lasairToken: {file: skysift_enrichment_lasair_token, components: [enrichment, backfill]}
skyportalToken: {file: skysift_skyportal_token, components: [inference]}
slackWebhookUrl: {file: skysift_slack_webhook_url, components: [inference]}
slackBotToken: {file: skysift_slack_bot_token, components: [inference]}
appPassword: {file: skysift_app_password, components: [app]}
authTokens: {file: skysift_auth_tokens, components: [ingest, enrichment, features, inference, trainer]}
authToken: {file: skysift_auth_token, components: [ingest, poll, round, app]}
{{- end }}

{{/*
The chart's own Secret: the secrets given as values and the bundled S3's generated keys. Its name ends in
"-values" so it never takes the name of a Secret users create for `existingSecret`.
*/}}
{{- define "skysift.secretName" -}}
{{- include "skysift.componentName" (dict "root" . "component" "values") }}
{{- end }}

{{/* True when the bundled S3 runs without given keys: the chart generates them (kept across upgrades). */}}
{{- define "skysift.generatedS3Keys" -}}
{{- $s := .Values.secrets }}
{{- $given := list $s.s3AccessKeyId.existingSecret $s.s3AccessKeyId.value $s.s3SecretAccessKey.existingSecret $s.s3SecretAccessKey.value | compact }}
{{- if and .Values.bundledS3.enabled (not $given) }}true{{ end }}
{{- end }}

{{/* The Secret (name, key) a secrets entry points at, or nothing when the entry is unset. */}}
{{- define "skysift.secretRef" -}}
{{- $entry := index .root.Values.secrets .name }}
{{- if $entry.existingSecret }}
{{- dict "name" $entry.existingSecret "key" $entry.key | toJson }}
{{- else if or $entry.value (and (has .name (list "s3AccessKeyId" "s3SecretAccessKey")) (include "skysift.generatedS3Keys" .root)) }}
{{- dict "name" (include "skysift.secretName" .root) "key" $entry.key | toJson }}
{{- else }}
{{- dict | toJson }}
{{- end }}
{{- end }}

{{/* Projected sources with every secret this component uses; empty when it uses none. */}}
{{- define "skysift.secretSources" -}}
{{- $root := .root }}
{{- $component := .component }}
{{- $specs := include "skysift.secretSpecs" . | fromYaml }}
{{- range $name := keys $specs | sortAlpha }}
{{- $spec := index $specs $name }}
{{- $ref := include "skysift.secretRef" (dict "root" $root "name" $name) | fromJson }}
{{- if and $ref.name (has $component $spec.components) }}
- secret:
    name: {{ $ref.name }}
    items:
      - key: {{ $ref.key }}
        path: {{ $spec.file }}
{{- end }}
{{- end }}
{{- end }}

{{- define "skysift.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "skysift.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/*
The pod spec every skysift container shares: one image, settings from the ConfigMap, secrets as files,
HOME and temporary files on an emptyDir so the root filesystem stays read-only.
Arguments: root, component, cfg (the component's values: scheduling overrides), command, args, ports, probes
(YAML), env (list), resources, restartPolicy, streamlitSecrets, volumes and volumeMounts (extra, as lists), and
sidecar: a second skysift container in the pod (name, args, env, resources), which gets no secrets.
No skysift pod talks to the Kubernetes API, so none mounts a token.
*/}}
{{- define "skysift.podSpec" -}}
{{- $root := .root }}
{{- $sources := include "skysift.secretSources" (dict "root" $root "component" .component) -}}
serviceAccountName: {{ include "skysift.serviceAccountName" $root }}
automountServiceAccountToken: false
{{- include "skysift.scheduling" . }}
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
securityContext:
  {{- include "skysift.podSecurityContext" . | nindent 2 }}
containers:
  {{- include "skysift.container" (merge (dict "name" .component "secrets" (not (empty $sources))) .) | nindent 2 }}
  {{- with .sidecar }}
  {{- include "skysift.container" (merge (dict "root" $root "command" (list "skysift")) .) | nindent 2 }}
  {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if $root.Values.taxonomy }}
  - name: taxonomy
    configMap:
      name: {{ include "skysift.componentName" (dict "root" $root "component" "taxonomy") }}
  {{- end }}
  {{- if $sources }}
  - name: secrets
    projected:
      defaultMode: 288  # 0440: readable by the pod's group (fsGroup) only
      sources:
        {{- $sources | nindent 8 }}
  {{- end }}
  {{- with .streamlitSecrets }}{{ if .existingSecret }}
  - name: streamlit-secrets
    secret:
      secretName: {{ .existingSecret }}
      defaultMode: 288
      items:
        - key: {{ .key }}
          path: secrets.toml
  {{- end }}{{ end }}
  {{- with .volumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with $root.Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
Pod-level fields every pod of the release shares, bundled S3 and MLflow included: pull secrets, and
nodeSelector, tolerations, affinity and priorityClassName, each from the component's values (cfg) when set
there, else the global value. Arguments: root, cfg. Output starts with a newline (include it after a field).
*/}}
{{- define "skysift.scheduling" -}}
{{- $root := .root }}
{{- $cfg := .cfg | default dict }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with default $root.Values.priorityClassName $cfg.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- range $field := list "nodeSelector" "tolerations" "affinity" }}
{{- with default (index $root.Values $field) (index $cfg $field) }}
{{ $field }}:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{/* One container of a skysift pod (see skysift.podSpec); secrets: mount the pod's secrets volume. */}}
{{- define "skysift.container" -}}
{{- $root := .root -}}
- name: {{ .name }}
  image: {{ include "skysift.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command: {{ toJson .command }}
  {{- with .args }}
  args: {{ toJson . }}
  {{- end }}
  envFrom:
    - configMapRef:
        name: {{ include "skysift.componentName" (dict "root" $root "component" "config") }}
  {{- with concat (.env | default list) $root.Values.extraEnvVars }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .ports }}
  ports:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .probes }}
  {{- . | nindent 2 }}
  {{- end }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    {{- include "skysift.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if $root.Values.taxonomy }}
    - name: taxonomy
      mountPath: {{ include "skysift.taxonomyDir" $root }}
      readOnly: true
    {{- end }}
    {{- if .secrets }}
    - name: secrets
      mountPath: /var/run/secrets/skysift
      readOnly: true
    {{- end }}
    {{- with .streamlitSecrets }}{{ if .existingSecret }}
    - name: streamlit-secrets
      mountPath: /app/.streamlit/secrets.toml
      subPath: secrets.toml
      readOnly: true
    {{- end }}{{ end }}
    {{- with .volumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $root.Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* Extra per-component SKYSIFT_* variables as an env list. */}}
{{- define "skysift.envList" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Where a team's taxonomy file (values.taxonomy) is mounted in every skysift container. */}}
{{- define "skysift.taxonomyDir" -}}
/etc/skysift/taxonomy
{{- end }}

{{- define "skysift.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- with .Values.taxonomy }}
checksum/taxonomy: {{ . | sha256sum }}
{{- end }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The PVC of a bundled store, unless persistence.existingClaim names one. `helm uninstall` keeps it
(resource-policy: keep): the MLflow registry and the S3 data outlive the release; delete the PVC to drop them.
Arguments: ctx (root, component), persistence.
*/}}
{{- define "skysift.bundledClaim" -}}
{{- if not .persistence.existingClaim }}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "skysift.componentName" .ctx }}
  namespace: {{ .ctx.root.Release.Namespace }}
  labels:
    {{- include "skysift.labels" .ctx | nindent 4 }}
  {{- if .persistence.keepOnUninstall }}
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
spec:
  accessModes: [ReadWriteOnce]
  {{- with .persistence.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ .persistence.size }}
---
{{- end }}
{{- end }}

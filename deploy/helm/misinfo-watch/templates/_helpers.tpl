{{/* Names and labels ------------------------------------------------------------------------- */}}

{{- define "misinfo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Kept short: KubeRay and Strimzi derive longer names (<cluster>-head-svc, <cluster>-kafka-bootstrap). */}}
{{- define "misinfo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "misinfo.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "misinfo.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "misinfo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "misinfo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: misinfo-watch
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "worker") */}}
{{- define "misinfo.selector" -}}
app.kubernetes.io/name: {{ include "misinfo.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "misinfo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "misinfo.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "misinfo.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Endpoints ----------------------------------------------------------------------------------- */}}

{{- define "misinfo.kafkaCluster" -}}
{{- default (printf "%s-kafka" (include "misinfo.fullname" .)) .Values.kafka.strimzi.clusterName -}}
{{- end -}}

{{- define "misinfo.kafkaBootstrap" -}}
{{- if eq .Values.kafka.mode "strimzi" -}}
{{- printf "%s-kafka-bootstrap:9092" (include "misinfo.kafkaCluster" .) -}}
{{- else -}}
{{- required "kafka.external.bootstrap: set the external Kafka's bootstrap servers (host:port,...), or kafka.mode=strimzi" .Values.kafka.external.bootstrap -}}
{{- end -}}
{{- end -}}

{{- define "misinfo.redisHost" -}}
{{- printf "%s-redis" (include "misinfo.fullname" .) -}}
{{- end -}}

{{- define "misinfo.s3Endpoint" -}}
{{- if eq .Values.s3.mode "create" -}}
{{- printf "http://%s-minio:9000" (include "misinfo.fullname" .) -}}
{{- else -}}
{{- .Values.s3.external.endpoint -}}
{{- end -}}
{{- end -}}

{{- define "misinfo.mlflowUri" -}}
{{- if eq .Values.mlflow.mode "create" -}}
{{- printf "http://%s-mlflow:5000" (include "misinfo.fullname" .) -}}
{{- else -}}
{{- required "mlflow.external.trackingUri: set the MLflow server's URL, or mlflow.mode=create" .Values.mlflow.external.trackingUri -}}
{{- end -}}
{{- end -}}

{{- define "misinfo.rayCluster" -}}
{{- printf "%s-ray" (include "misinfo.fullname" .) -}}
{{- end -}}

{{- define "misinfo.rayAddress" -}}
{{- if eq .Values.ray.mode "create" -}}
{{- printf "http://%s-head-svc:8265" (include "misinfo.rayCluster" .) -}}
{{- else if eq .Values.ray.mode "external" -}}
{{- required "ray.external.address: set the Ray Jobs API URL (http://...:8265), or ray.mode=create" .Values.ray.external.address -}}
{{- end -}}
{{- end -}}

{{/* Settings -------------------------------------------------------------------------------------- */}}

{{/* MISINFO_* names the chart sets itself: a `settings` map may not override them. */}}
{{- define "misinfo.managedSettings" -}}
{{- list "MISINFO_STATE_DIR" "MISINFO_KAFKA_BOOTSTRAP" "MISINFO_REDIS_URL" "MISINFO_REDIS_PREFIX" "MISINFO_MLFLOW_TRACKING_URI" "MISINFO_RAY_ADDRESS" "MISINFO_BLOB_URI" "MISINFO_TOPIC_IMAGES" "MISINFO_TOPIC_VERDICTS" "MISINFO_TOPIC_FEEDBACK" "MISINFO_TOPIC_DEAD_LETTERS" "MISINFO_TOPIC_CONTROL" "MISINFO_TOPIC_PARTITIONS" "MISINFO_MODEL_NAME" "MISINFO_LOG_LEVEL" "MISINFO_DEVICE" "MISINFO_MODEL_PATH" "MISINFO_PROFILE_PATH" "MISINFO_WORKER_GROUP" "MISINFO_WORKER_WEB_PORT" "MISINFO_MAX_BATCH" "MISINFO_MAX_WAIT_S" "MISINFO_EXPLAIN" "MISINFO_WATCHER_GROUP" "MISINFO_WATCHER_WEB_PORT" "MISINFO_TRAIN_MIN_NEW_LABELS" "MISINFO_TRAIN_COOLDOWN_S" "MISINFO_TRAIN_PYTHON" "MISINFO_MODERATION_FORWARDED_ALLOW_IPS" | toJson -}}
{{- end -}}

{{/* Secret settings (SecretStr in core/config.py): only through a component's secretEnv. */}}
{{- define "misinfo.secretSettings" -}}
{{- list "MISINFO_REDDIT_CLIENT_SECRET" "MISINFO_X_BEARER_TOKEN" "MISINFO_INSTAGRAM_ACCESS_TOKEN" | toJson -}}
{{- end -}}

{{/* One `settings` map as env entries: (dict "ctx" $ "settings" MAP "where" "workers.settings") */}}
{{- define "misinfo.settingsEnv" -}}
{{- $managed := include "misinfo.managedSettings" .ctx | fromJsonArray -}}
{{- $secret := include "misinfo.secretSettings" .ctx | fromJsonArray -}}
{{- range $name, $value := .settings }}
{{- if has $name $managed }}
{{- fail (printf "%s.%s: the chart sets %s itself; use its own value key (values.yaml says which)" $.where $name $name) }}
{{- end }}
{{- if has $name $secret }}
{{- fail (printf "%s.%s is a secret: put it in the Secret and name its key in the component's secretEnv" $.where $name) }}
{{- end }}
- name: {{ $name }}
  {{- /* float64 from YAML prints 50000000 as 5e+07, which an int setting cannot parse */}}
  {{- if and (kindIs "float64" $value) (eq $value (floor $value)) }}
  value: {{ int64 $value | quote }}
  {{- else }}
  value: {{ toString $value | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
The environment of every misinfo container: (dict "ctx" $ "settings" MAP "where" "..." "secretEnv" MAP)
Order matters: REDIS_PASSWORD comes before MISINFO_REDIS_URL, which uses it through $(REDIS_PASSWORD).
*/}}
{{- define "misinfo.env" -}}
{{- $ctx := .ctx -}}
{{- $secret := include "misinfo.secretName" $ctx -}}
{{- if eq $ctx.Values.redis.mode "create" }}
- name: REDIS_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: redis-password}}
{{- end }}
- name: MISINFO_STATE_DIR
  value: {{ $ctx.Values.stateDir | quote }}
- name: MISINFO_KAFKA_BOOTSTRAP
  value: {{ include "misinfo.kafkaBootstrap" $ctx | quote }}
{{- if eq $ctx.Values.redis.mode "create" }}
- name: MISINFO_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "misinfo.redisHost" $ctx) | quote }}
{{- else }}
- name: MISINFO_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: redis-url}}
{{- end }}
- name: MISINFO_REDIS_PREFIX
  value: {{ $ctx.Values.redisPrefix | quote }}
- name: MISINFO_MLFLOW_TRACKING_URI
  value: {{ include "misinfo.mlflowUri" $ctx | quote }}
{{- if ne $ctx.Values.ray.mode "none" }}
- name: MISINFO_RAY_ADDRESS
  value: {{ include "misinfo.rayAddress" $ctx | quote }}
{{- end }}
- name: MISINFO_BLOB_URI
  value: {{ printf "s3://%s" $ctx.Values.s3.blobBucket | quote }}
- name: MISINFO_TOPIC_IMAGES
  value: {{ $ctx.Values.topics.images | quote }}
- name: MISINFO_TOPIC_VERDICTS
  value: {{ $ctx.Values.topics.verdicts | quote }}
- name: MISINFO_TOPIC_FEEDBACK
  value: {{ $ctx.Values.topics.feedback | quote }}
- name: MISINFO_TOPIC_DEAD_LETTERS
  value: {{ $ctx.Values.topics.deadLetters | quote }}
- name: MISINFO_TOPIC_CONTROL
  value: {{ $ctx.Values.topics.control | quote }}
- name: MISINFO_TOPIC_PARTITIONS
  value: {{ int64 $ctx.Values.topics.partitions | quote }}
- name: MISINFO_MODEL_NAME
  value: {{ $ctx.Values.modelName | quote }}
- name: MISINFO_LOG_LEVEL
  value: {{ $ctx.Values.logLevel | quote }}
{{- /* The blob store (claim check) is S3: boto3 reads the standard AWS variables. */}}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: s3-access-key-id}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: s3-secret-access-key}}
{{- with include "misinfo.s3Endpoint" $ctx }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ . | quote }}
{{- end }}
- name: AWS_DEFAULT_REGION
  value: {{ $ctx.Values.s3.region | quote }}
- name: HF_HOME
  value: /var/cache/misinfo/hf
- name: HF_TOKEN
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: hf-token, optional: true}}
{{- /* One map, the component's names winning over the global ones: no name is set twice. */}}
{{- $settings := merge (dict) (default dict .settings) (default dict $ctx.Values.settings) }}
{{- include "misinfo.settingsEnv" (dict "ctx" $ctx "settings" $settings "where" (printf "settings or %s" .where)) }}
{{- range $name, $key := (default dict .secretEnv) }}
- name: {{ $name }}
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ $key }}}}
{{- end }}
{{- end -}}

{{/* Ray clients authenticate with the cluster's token (Ray >= 2.59). */}}
{{- define "misinfo.rayAuthEnv" -}}
{{- if .Values.ray.authToken }}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom: {secretKeyRef: {name: {{ include "misinfo.secretName" . }}, key: auth_token}}
{{- end }}
{{- end -}}

{{/* Pods -------------------------------------------------------------------------------------------- */}}

{{/* Writable scratch for a read-only root: state dir, /tmp, HOME (torch/triton caches). */}}
{{- define "misinfo.scratchVolumes" -}}
- name: state
  emptyDir: {}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- end -}}

{{- define "misinfo.scratchMounts" -}}
- {name: state, mountPath: {{ .Values.stateDir }}}
- {name: tmp, mountPath: /tmp}
- {name: home, mountPath: /home/misinfo}
{{- end -}}

{{/* The weights on a shared claim (models.existingClaim), read-only, for workers and Ray GPU pods. */}}
{{- define "misinfo.modelsMount" -}}
{{- if .Values.models.existingClaim }}
- {name: models, mountPath: /var/lib/misinfo/models, readOnly: true}
{{- end }}
{{- end -}}

{{- define "misinfo.modelsVolume" -}}
{{- if .Values.models.existingClaim }}
- name: models
  persistentVolumeClaim: {claimName: {{ .Values.models.existingClaim }}, readOnly: true}
{{- end }}
{{- end -}}

{{- define "misinfo.podDefaults" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Prometheus scrape annotations: (dict "ctx" $ "port" N) */}}
{{- define "misinfo.scrapeAnnotations" -}}
{{- if .ctx.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* Keys of the Secret that the enabled parts read (a created Secret must hold each). */}}
{{- define "misinfo.secretKeys" -}}
{{- $keys := list "s3-access-key-id" "s3-secret-access-key" -}}
{{- if eq .Values.redis.mode "create" }}{{ $keys = append $keys "redis-password" }}{{ else }}{{ $keys = append $keys "redis-url" }}{{ end -}}
{{- if eq .Values.mlflow.mode "create" }}{{ $keys = append $keys "postgres-password" }}{{ end -}}
{{- if and (ne .Values.ray.mode "none") .Values.ray.authToken }}{{ $keys = append $keys "auth_token" }}{{ end -}}
{{- range $name, $src := .Values.collectors.sources }}
{{- if $src.enabled }}{{ range $env, $key := $src.secretEnv }}{{ $keys = append $keys $key }}{{ end }}{{ end }}
{{- end -}}
{{- $keys | uniq | toJson -}}
{{- end -}}

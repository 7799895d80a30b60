{{/*
Shared names, labels and settings. Templates that render one object per service range
over "ideasnap.components" and pass a context dict:
  root: the chart's root context ($), name: the service name (gateway, upload-svc,
  ai-svc, library-svc), key: its values key (gateway, uploadSvc, aiSvc, librarySvc),
  svc: its values.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "ideasnap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name: the release name, plus the chart name unless the release already holds it. */}}
{{- define "ideasnap.fullname" -}}
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

{{/* chart label value: name-version */}}
{{- define "ideasnap.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The services: name -> values key. Ranging over it yields them sorted by name. */}}
{{- define "ideasnap.components" -}}
gateway: gateway
upload-svc: uploadSvc
ai-svc: aiSvc
library-svc: librarySvc
{{- end }}

{{/* Labels on every object (Kubernetes' recommended app.kubernetes.io set). */}}
{{- define "ideasnap.labels" -}}
helm.sh/chart: {{ include "ideasnap.chart" . }}
{{ include "ideasnap.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ideasnap
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "ideasnap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ideasnap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per-service names and labels; the argument is a context dict (root, name, ...). */}}
{{- define "ideasnap.component.fullname" -}}
{{- printf "%s-%s" (include "ideasnap.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ideasnap.component.labels" -}}
{{ include "ideasnap.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "ideasnap.component.selectorLabels" -}}
{{ include "ideasnap.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* Selector labels of another service, by name (for NetworkPolicy peers). */}}
{{- define "ideasnap.peerSelectorLabels" -}}
{{ include "ideasnap.selectorLabels" .root }}
app.kubernetes.io/component: {{ .peer }}
{{- end }}

{{- define "ideasnap.serviceAccountName" -}}
{{- if .svc.serviceAccount.create }}
{{- default (include "ideasnap.component.fullname" .) .svc.serviceAccount.name }}
{{- else }}
{{- default "default" .svc.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The container image: [registry/]repository[:tag][@digest]. */}}
{{- define "ideasnap.image" -}}
{{- $image := .svc.image }}
{{- $registry := .root.Values.image.registry }}
{{- $repository := ternary (printf "%s/%s" (trimSuffix "/" $registry) $image.repository) $image.repository (ne $registry "") }}
{{- $tag := $image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion | toString }}
{{- if $image.digest }}
{{- printf "%s:%s@%s" $repository $tag $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/* Ports inside every container: one http port for the API and probes, one for /metrics. */}}
{{- define "ideasnap.httpPort" -}}8080{{- end }}
{{- define "ideasnap.metricsPort" -}}9090{{- end }}
{{- define "ideasnap.metricsDir" -}}/run/prometheus{{- end }}

{{/* A service's in-cluster URL, by name. */}}
{{- define "ideasnap.serviceUrl" -}}
{{- $svc := index .root.Values (get (include "ideasnap.components" .root | fromYaml) .peer) }}
{{- printf "http://%s-%s:%v" (include "ideasnap.fullname" .root) .peer $svc.service.port }}
{{- end }}

{{/*
Does the cluster serve an API? The argument is a dict: root, api ("group/version" or
"group/version/Kind"). True when Helm's discovery (.Capabilities, `helm install`) finds it
or the values declare it in apiVersions (for `helm template`, which cannot ask the
cluster). Every object of a CRD renders only when this says so.
*/}}
{{- define "ideasnap.hasAPI" -}}
{{- $declared := .root.Values.apiVersions | default list }}
{{- $groupVersion := regexReplaceAll "^([^/]+/[^/]+)/[^/]+$" .api "${1}" }}
{{- if or (.root.Capabilities.APIVersions.Has .api) (has .api $declared) (has $groupVersion $declared) }}true{{ end }}
{{- end }}

{{/* Is this service autoscaled? upload-svc's null means: whenever its storage is shared. */}}
{{- define "ideasnap.autoscaled" -}}
{{- if kindIs "invalid" .svc.autoscaling.enabled }}
{{- if and (eq .name "upload-svc") (include "ideasnap.upload.sharedStorage" .root) }}true{{ end }}
{{- else if .svc.autoscaling.enabled }}true
{{- end }}
{{- end }}

{{/* Fewest replicas the service runs: the autoscaler's floor, or replicaCount. */}}
{{- define "ideasnap.minReplicas" -}}
{{- if include "ideasnap.autoscaled" . }}
{{- .svc.autoscaling.minReplicas }}
{{- else }}
{{- .svc.replicaCount }}
{{- end }}
{{- end }}

{{/* Seconds Kubernetes waits after SIGTERM: the preStop sleep, gunicorn's graceful timeout, and a margin. */}}
{{- define "ideasnap.terminationGracePeriodSeconds" -}}
{{- add .svc.preStopSleepSeconds .svc.gunicorn.gracefulTimeoutSeconds 10 }}
{{- end }}

{{/* "true" when upload-svc's storage is shared by every replica (S3 or a ReadWriteMany volume). */}}
{{- define "ideasnap.upload.sharedStorage" -}}
{{- $storage := .Values.uploadSvc.storage }}
{{- if eq $storage.backend "s3" }}true
{{- else if and $storage.local.persistence.enabled (has "ReadWriteMany" $storage.local.persistence.accessModes) }}true
{{- end }}
{{- end }}

{{/* Secrets: each is an existing Secret or one the chart makes from an inline value. */}}
{{- define "ideasnap.sentry.enabled" -}}
{{- if or .Values.sentry.existingSecret .Values.sentry.dsn }}true{{ end }}
{{- end }}
{{- define "ideasnap.sentry.secretName" -}}
{{- .Values.sentry.existingSecret | default (printf "%s-sentry" (include "ideasnap.fullname" .)) }}
{{- end }}
{{- define "ideasnap.sentry.secretKey" -}}
{{- ternary .Values.sentry.existingSecretKey "sentry-dsn" (ne .Values.sentry.existingSecret "") }}
{{- end }}

{{- define "ideasnap.gemini.enabled" -}}
{{- if or .Values.aiSvc.gemini.existingSecret .Values.aiSvc.gemini.apiKey }}true{{ end }}
{{- end }}
{{- define "ideasnap.gemini.secretName" -}}
{{- .Values.aiSvc.gemini.existingSecret | default (printf "%s-gemini" (include "ideasnap.fullname" .)) }}
{{- end }}
{{- define "ideasnap.gemini.secretKey" -}}
{{- ternary .Values.aiSvc.gemini.existingSecretKey "gemini-api-key" (ne .Values.aiSvc.gemini.existingSecret "") }}
{{- end }}

{{- define "ideasnap.s3.credentials" -}}
{{- $s3 := .Values.uploadSvc.storage.s3 }}
{{- if and (eq .Values.uploadSvc.storage.backend "s3") (or $s3.existingSecret $s3.accessKeyId) }}true{{ end }}
{{- end }}
{{- define "ideasnap.s3.secretName" -}}
{{- .Values.uploadSvc.storage.s3.existingSecret | default (printf "%s-s3" (include "ideasnap.fullname" .)) }}
{{- end }}

{{- define "ideasnap.apiKeys.secretName" -}}
{{- .Values.gateway.apiKeys.existingSecret | default (printf "%s-api-keys" (include "ideasnap.fullname" .)) }}
{{- end }}
{{- define "ideasnap.apiKeys.secretKey" -}}
{{- ternary .Values.gateway.apiKeys.existingSecretKey "api-keys" (ne .Values.gateway.apiKeys.existingSecret "") }}
{{- end }}
{{- define "ideasnap.apiKeys.dir" -}}/etc/ideasnap/api-keys{{- end }}

{{- define "ideasnap.redis.secretName" -}}
{{- .Values.redis.existingSecret }}
{{- end }}

{{/* The chart's own Valkey runs: no external Redis, and valkey.enabled. */}}
{{- define "ideasnap.valkey.enabled" -}}
{{- if and (not .Values.redis.enabled) .Values.valkey.enabled }}true{{ end }}
{{- end }}

{{- define "ideasnap.valkey.fullname" -}}
{{- printf "%s-valkey" (include "ideasnap.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ideasnap.valkey.url" -}}
{{- printf "redis://%s:6379/0" (include "ideasnap.valkey.fullname" .) }}
{{- end }}

{{/* A store shared by every process: the external Redis or the chart's Valkey. */}}
{{- define "ideasnap.sharedStore" -}}
{{- if or .Values.redis.enabled (include "ideasnap.valkey.enabled" .) }}true{{ end }}
{{- end }}

{{/* Does this service talk to the shared store? (the gateway's limits, ai-svc's cache) */}}
{{- define "ideasnap.usesRedis" -}}
{{- if and (include "ideasnap.sharedStore" .root) (has .name (list "gateway" "ai-svc")) }}true{{ end }}
{{- end }}

{{/* The most gateway processes the release can run: replicas (the HPA's maximum) x workers. */}}
{{- define "ideasnap.gateway.maxProcesses" -}}
{{- $gateway := .Values.gateway }}
{{- $workers := $gateway.config.WEB_CONCURRENCY | default (get .Values.config.extra "WEB_CONCURRENCY") | default $gateway.gunicorn.workers | int }}
{{- $replicas := ternary $gateway.autoscaling.maxReplicas $gateway.replicaCount (eq (include "ideasnap.autoscaled" (dict "root" . "name" "gateway" "svc" $gateway)) "true") | int }}
{{- mul $replicas $workers }}
{{- end }}

{{/* Where the entry point goes: "gatewayApi", "ingress" or "none". */}}
{{- define "ideasnap.expose" -}}
{{- $expose := .Values.expose }}
{{- if eq $expose "auto" }}
{{- ternary "gatewayApi" "ingress" (eq (include "ideasnap.hasAPI" (dict "root" . "api" "gateway.networking.k8s.io/v1/HTTPRoute")) "true") }}
{{- else }}
{{- $expose }}
{{- end }}
{{- end }}

{{/*
Values that cannot be expressed in values.schema.json: combinations. Rendering stops
with a message that names the values to change.
*/}}
{{- define "ideasnap.validate" -}}
{{- $v := .Values }}
{{- range $name, $key := include "ideasnap.components" . | fromYaml }}
{{- $svc := index $v $key }}
{{- $autoscaled := include "ideasnap.autoscaled" (dict "root" $ "name" $name "svc" $svc) }}
{{- if and $autoscaled (gt (int $svc.autoscaling.minReplicas) (int $svc.autoscaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas (%v) is above %s.autoscaling.maxReplicas (%v)" $key $svc.autoscaling.minReplicas $key $svc.autoscaling.maxReplicas) }}
{{- end }}
{{- if and (not $autoscaled) (lt (int $svc.replicaCount) 1) }}
{{- fail (printf "%s.replicaCount must be at least 1 when autoscaling is off" $key) }}
{{- end }}
{{- $inFlight := and (eq $name "ai-svc") (or $svc.autoscaling.inFlight.prometheusAdapter $svc.autoscaling.keda.enabled) }}
{{- if and $autoscaled (not $inFlight) (not $svc.autoscaling.targetCPUUtilizationPercentage) (not $svc.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail (printf "%s.autoscaling needs a metric: targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" $key) }}
{{- end }}
{{- if and (not (kindIs "invalid" $svc.pdb.minAvailable)) (not (kindIs "invalid" $svc.pdb.maxUnavailable)) }}
{{- fail (printf "%s.pdb: set minAvailable or maxUnavailable, not both" $key) }}
{{- end }}
{{- end }}
{{- if and $v.redis.enabled (not $v.redis.url) (not $v.redis.existingSecret) }}
{{- fail "redis.enabled needs redis.url or redis.existingSecret" }}
{{- end }}
{{- if and $v.redis.enabled $v.networkPolicy.enabled (not $v.networkPolicy.egress.redis.to) }}
{{- fail "redis.enabled with networkPolicy.enabled needs networkPolicy.egress.redis.to: the namespace/pod selector or the address (ipBlock) of the external Redis" }}
{{- end }}
{{- $processes := include "ideasnap.gateway.maxProcesses" . | int }}
{{- if and (gt $processes 1) (not (include "ideasnap.sharedStore" .)) }}
{{- fail (printf "the gateway can run %d processes (gateway.autoscaling.maxReplicas or gateway.replicaCount, times gateway.gunicorn.workers / WEB_CONCURRENCY) and no shared store is configured: rate limits, daily AI quotas and Idempotency-Key would be counted per process. Set valkey.enabled=true (the chart's Valkey), or redis.enabled=true with redis.url or redis.existingSecret, or run a single gateway process" $processes) }}
{{- end }}
{{- if and $v.aiSvc.autoscaling.keda.enabled (include "ideasnap.autoscaled" (dict "root" $ "name" "ai-svc" "svc" $v.aiSvc)) (not (include "ideasnap.hasAPI" (dict "root" . "api" "keda.sh/v1alpha1/ScaledObject"))) }}
{{- fail "aiSvc.autoscaling.keda.enabled needs KEDA's CRDs (keda.sh/v1alpha1), which this cluster does not serve: install KEDA, or for helm template declare it in apiVersions" }}
{{- end }}
{{- if and $v.prometheusRule.runbookBaseUrl (not (regexMatch "^https?://[^/]+" $v.prometheusRule.runbookBaseUrl)) }}
{{- fail (printf "prometheusRule.runbookBaseUrl must be an absolute http(s) URL an alert receiver can open, got %q" $v.prometheusRule.runbookBaseUrl) }}
{{- end }}
{{- $expose := include "ideasnap.expose" . }}
{{- if not (has $expose (list "gatewayApi" "ingress" "none")) }}
{{- fail (printf "expose must be auto, gatewayApi, ingress or none, got %q" $v.expose) }}
{{- end }}
{{- if and (eq $expose "gatewayApi") (not $v.gatewayApi.parentRefs) }}
{{- fail "the gateway is exposed through Gateway API (expose, and the cluster serves gateway.networking.k8s.io/v1): set gatewayApi.parentRefs to the Gateway the HTTPRoute attaches to, or expose=ingress / expose=none" }}
{{- end }}
{{- $storage := $v.uploadSvc.storage }}
{{- if and (eq $storage.backend "s3") (not $storage.s3.bucket) }}
{{- fail "uploadSvc.storage.s3.bucket is required when uploadSvc.storage.backend is s3" }}
{{- end }}
{{- if and (eq $storage.backend "s3") (not $storage.s3.existingSecret) (ne (empty $storage.s3.accessKeyId) (empty $storage.s3.secretAccessKey)) }}
{{- fail "uploadSvc.storage.s3: set both accessKeyId and secretAccessKey, or neither (a workload identity)" }}
{{- end }}
{{- if not (include "ideasnap.upload.sharedStorage" .) }}
{{- if or (include "ideasnap.autoscaled" (dict "root" $ "name" "upload-svc" "svc" $v.uploadSvc)) (gt (int $v.uploadSvc.replicaCount) 1) }}
{{- fail "upload-svc replicas would not see each other's uploads: with more than one replica (or uploadSvc.autoscaling.enabled) use uploadSvc.storage.backend=s3 or a ReadWriteMany volume (uploadSvc.storage.local.persistence.accessModes)" }}
{{- end }}
{{- end }}
{{- if and $v.gateway.apiKeys.enabled (not $v.gateway.apiKeys.content) (not $v.gateway.apiKeys.existingSecret) }}
{{- fail "gateway.apiKeys.enabled needs gateway.apiKeys.existingSecret or gateway.apiKeys.content" }}
{{- end }}
{{- include "ideasnap.library.validate" . }}
{{- end }}

{{/*
The environment of a service, as ConfigMap data (sorted keys, string values). Common
settings first, then the service's own, then config.extra, then <service>.config.
*/}}
{{- define "ideasnap.configData" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $svc := .svc }}
{{- $data := dict
  "HOST" "0.0.0.0"
  "PORT" (include "ideasnap.httpPort" .)
  "METRICS_PORT" (include "ideasnap.metricsPort" .)
  "PROMETHEUS_MULTIPROC_DIR" (include "ideasnap.metricsDir" .)
  "ENVIRONMENT" $v.config.environment
  "RELEASE" ($v.config.release | default ($svc.image.tag | default $v.image.tag | default $root.Chart.AppVersion))
  "LOG_LEVEL" $v.config.logLevel
  "LOG_FORMAT" $v.config.logFormat
  "WEB_CONCURRENCY" (toString (int64 $svc.gunicorn.workers))
  "GUNICORN_THREADS" (toString (int64 $svc.gunicorn.threads))
  "GUNICORN_TIMEOUT" (toString (int64 $svc.gunicorn.timeoutSeconds))
  "GUNICORN_GRACEFUL_TIMEOUT" (toString (int64 $svc.gunicorn.gracefulTimeoutSeconds))
  "GUNICORN_KEEPALIVE" (toString (int64 $svc.gunicorn.keepaliveSeconds))
  "GUNICORN_MAX_REQUESTS" (toString (int64 $svc.gunicorn.maxRequests))
  "GUNICORN_MAX_REQUESTS_JITTER" (toString (int64 $svc.gunicorn.maxRequestsJitter))
  "SENTRY_TRACES_SAMPLE_RATE" (toString $v.config.sentryTracesSampleRate)
  "OTEL_TRACES_SAMPLER" "parentbased_traceidratio"
  "OTEL_TRACES_SAMPLER_ARG" (toString $v.config.traceSampleRatio)
}}
{{- with $v.config.otlpEndpoint }}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_ENDPOINT" . }}
{{- end }}
{{- if and $v.redis.enabled $v.redis.url (not $v.redis.existingSecret) (include "ideasnap.usesRedis" .) }}
{{- $_ := set $data "REDIS_URL" $v.redis.url }}
{{- else if and (include "ideasnap.valkey.enabled" $root) (include "ideasnap.usesRedis" .) }}
{{- $_ := set $data "REDIS_URL" (include "ideasnap.valkey.url" $root) }}
{{- end }}
{{- if eq .name "gateway" }}
{{- $_ := set $data "UPLOAD_SVC_URL" (include "ideasnap.serviceUrl" (dict "root" $root "peer" "upload-svc")) }}
{{- $_ := set $data "AI_SVC_URL" (include "ideasnap.serviceUrl" (dict "root" $root "peer" "ai-svc")) }}
{{- $_ := set $data "LIBRARY_SVC_URL" (include "ideasnap.serviceUrl" (dict "root" $root "peer" "library-svc")) }}
{{- $_ := set $data "MAX_UPLOAD_BYTES" (toString (int64 $v.config.maxUploadBytes)) }}
{{- $_ := set $data "TRUSTED_PROXY_HOPS" (toString (int64 $svc.trustedProxyHops)) }}
{{- with $svc.cors.allowedOrigins }}
{{- $_ := set $data "CORS_ALLOWED_ORIGINS" (join "," .) }}
{{- end }}
{{- with $svc.rateLimits.default }}
{{- $_ := set $data "RATE_LIMIT_DEFAULT" . }}
{{- end }}
{{- with $svc.rateLimits.ai }}
{{- $_ := set $data "RATE_LIMIT_AI" . }}
{{- end }}
{{- with $svc.rateLimits.aiDailyQuota }}
{{- $_ := set $data "AI_DAILY_QUOTA" . }}
{{- end }}
{{- if not (kindIs "invalid" $svc.rateLimits.failOpen) }}
{{- $_ := set $data "RATE_LIMIT_FAIL_OPEN" (toString $svc.rateLimits.failOpen) }}
{{- end }}
{{- with $svc.firebase.projectId }}
{{- $_ := set $data "FIREBASE_PROJECT_ID" . }}
{{- end }}
{{- with $svc.firebase.certsUrl }}
{{- $_ := set $data "FIREBASE_CERTS_URL" . }}
{{- end }}
{{- if $svc.apiKeys.enabled }}
{{- $_ := set $data "API_KEYS_FILE" (printf "%s/%s" (include "ideasnap.apiKeys.dir" .) (include "ideasnap.apiKeys.secretKey" $root)) }}
{{- $_ := set $data "API_KEYS_REQUIRED" (toString $svc.apiKeys.required) }}
{{- end }}
{{- else if eq .name "upload-svc" }}
{{- $storage := $svc.storage }}
{{- $_ := set $data "STORAGE_BACKEND" $storage.backend }}
{{- $_ := set $data "MAX_UPLOAD_BYTES" (toString (int64 $v.config.maxUploadBytes)) }}
{{- $_ := set $data "PREVIEW_LONG_SIDE" (toString (int64 $v.config.previewLongSide)) }}
{{- $_ := set $data "ANONYMOUS_RETENTION_DAYS" (toString (int64 $storage.anonymousRetentionDays)) }}
{{- if eq $storage.backend "local" }}
{{- $_ := set $data "STORAGE_DIR" $storage.local.path }}
{{- else }}
{{- $_ := set $data "S3_BUCKET" $storage.s3.bucket }}
{{- $_ := set $data "S3_ADDRESSING_STYLE" $storage.s3.addressingStyle }}
{{- with $storage.s3.endpointUrl }}
{{- $_ := set $data "S3_ENDPOINT_URL" . }}
{{- end }}
{{- with $storage.s3.region }}
{{- $_ := set $data "S3_REGION" . }}
{{- end }}
{{- end }}
{{- else if eq .name "ai-svc" }}
{{- $gemini := $svc.gemini }}
{{- $_ := set $data "UPLOAD_SVC_URL" (include "ideasnap.serviceUrl" (dict "root" $root "peer" "upload-svc")) }}
{{- $_ := set $data "PREVIEW_LONG_SIDE" (toString (int64 $v.config.previewLongSide)) }}
{{- with $gemini.model }}
{{- $_ := set $data "GEMINI_MODEL" . }}
{{- end }}
{{- with $gemini.fallbackModel }}
{{- $_ := set $data "GEMINI_FALLBACK_MODEL" . }}
{{- end }}
{{- with $gemini.baseUrl }}
{{- $_ := set $data "GEMINI_BASE_URL" . }}
{{- end }}
{{- with $gemini.apiVersion }}
{{- $_ := set $data "GEMINI_API_VERSION" . }}
{{- end }}
{{- if not (kindIs "invalid" $gemini.timeoutSeconds) }}
{{- $_ := set $data "GEMINI_TIMEOUT_SECONDS" (toString $gemini.timeoutSeconds) }}
{{- end }}
{{- else if eq .name "library-svc" }}
{{- include "ideasnap.library.configData" (dict "ctx" . "data" $data) }}
{{- end }}
{{- range $name, $value := $v.config.extra }}
{{- $_ := set $data $name $value }}
{{- end }}
{{- range $name, $value := $svc.config }}
{{- $_ := set $data $name $value }}
{{- end }}
{{- range $name := keys $data | sortAlpha }}
{{ $name }}: {{ index $data $name | toString | quote }}
{{- end }}
{{- end }}

{{/* ai-svc's in-flight target per pod: workers x threads x targetUtilization (a decimal, e.g. "12"). */}}
{{- define "ideasnap.inFlightTarget" -}}
{{- $capacity := mul (int64 .svc.gunicorn.workers) (int64 .svc.gunicorn.threads) }}
{{- printf "%g" (round (mulf $capacity .svc.autoscaling.inFlight.targetUtilization) 3) }}
{{- end }}

{{/*
The chart's Valkey configuration (valkey.conf). No password: the NetworkPolicy admits
the gateway and ai-svc alone. Keys are small counters and records with TTLs plus
ai-svc's cache; allkeys-lfu evicts the rarely used cache entries first.
*/}}
{{- define "ideasnap.valkey.config" -}}
{{- $valkey := .Values.valkey -}}
bind * -::*
protected-mode no
port 6379
dir /data
maxmemory {{ $valkey.maxMemory }}
maxmemory-policy {{ $valkey.maxMemoryPolicy }}
{{- if $valkey.persistence.enabled }}
appendonly yes
appendfsync everysec
save ""
{{- else }}
appendonly no
save ""
{{- end }}
tcp-keepalive 60
timeout 0
{{- end }}

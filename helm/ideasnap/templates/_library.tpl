{{/*
library-svc's own pieces: its settings, the Secrets it reads (the database URL from an
existing Secret or from the CloudNativePG Cluster's generated app Secret), and the
checks on its values. Shared by its Deployment and the migrations Job, which must
reach the same database with the same settings.
*/}}

{{/* The CloudNativePG Cluster's name; CloudNativePG names its app Secret "<cluster>-app". */}}
{{- define "ideasnap.library.cnpgClusterName" -}}
{{- printf "%s-library-db" (include "ideasnap.fullname" .) | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/* The Secret and key holding DATABASE_URL. */}}
{{- define "ideasnap.library.databaseSecretName" -}}
{{- if .Values.librarySvc.database.cnpg.enabled }}
{{- printf "%s-app" (include "ideasnap.library.cnpgClusterName" .) }}
{{- else }}
{{- .Values.librarySvc.database.existingSecret }}
{{- end }}
{{- end }}
{{- define "ideasnap.library.databaseSecretKey" -}}
{{- ternary "uri" .Values.librarySvc.database.existingSecretKey .Values.librarySvc.database.cnpg.enabled }}
{{- end }}

{{/* Settings of library-svc, added to its ConfigMap data (argument: dict ctx, data). */}}
{{- define "ideasnap.library.configData" -}}
{{- $root := .ctx.root }}
{{- $svc := .ctx.svc }}
{{- $_ := set .data "UPLOAD_SVC_URL" (include "ideasnap.serviceUrl" (dict "root" $root "peer" "upload-svc")) }}
{{- with $svc.firebase.projectId }}
{{- $_ := set $.data "FIREBASE_PROJECT_ID" . }}
{{- end }}
{{- end }}

{{/* library-svc's credentials as EnvVars from Secrets (the Deployment and the migrations Job). */}}
{{- define "ideasnap.library.secretEnv" -}}
{{- $secrets := .Values.librarySvc.secrets }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "ideasnap.library.databaseSecretName" . }}
      key: {{ include "ideasnap.library.databaseSecretKey" . }}
- name: BILLING_WEBHOOK_AUTHORIZATION
  valueFrom:
    secretKeyRef:
      name: {{ $secrets.existingSecret }}
      key: {{ $secrets.billingWebhookAuthorizationKey }}
- name: PAGE_TOKEN_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secrets.existingSecret }}
      key: {{ $secrets.pageTokenSecretKey }}
{{- end }}

{{/* Hook phases of the migrations Job. A chart-made Cluster does not exist before the
release's first install, so then the Job runs right after it (post-install). */}}
{{- define "ideasnap.library.migrationHooks" -}}
{{- ternary "post-install,pre-upgrade" "pre-install,pre-upgrade" .Values.librarySvc.database.cnpg.enabled }}
{{- end }}

{{- define "ideasnap.library.validate" -}}
{{- $database := .Values.librarySvc.database }}
{{- if and (not $database.cnpg.enabled) (not $database.existingSecret) }}
{{- fail "library-svc needs a database: set librarySvc.database.existingSecret (a Secret holding DATABASE_URL) or librarySvc.database.cnpg.enabled" }}
{{- end }}
{{- end }}

{{/* library-svc's egress rules beyond DNS and the services: its database and Google's APIs. */}}
{{- define "ideasnap.library.egress" -}}
{{- include "ideasnap.library.databaseEgress" . }}
# Google's APIs through the Firebase Admin SDK.
- to:
    {{- toYaml .Values.networkPolicy.egress.firebase.to | nindent 4 }}
  ports:
    {{- toYaml .Values.networkPolicy.egress.firebase.ports | nindent 4 }}
{{- end }}

{{/* The egress rule to library-svc's PostgreSQL (the service and its migrations Job). */}}
{{- define "ideasnap.library.databaseEgress" -}}
{{- $np := .Values.networkPolicy }}
{{- if .Values.librarySvc.database.cnpg.enabled }}
# PostgreSQL: the instances of the release's CloudNativePG Cluster.
- to:
    - podSelector:
        matchLabels:
          cnpg.io/cluster: {{ include "ideasnap.library.cnpgClusterName" . }}
  ports:
    - port: 5432
      protocol: TCP
{{- else }}
# PostgreSQL (external).
- to:
    {{- toYaml $np.egress.database.to | nindent 4 }}
  ports:
    {{- toYaml $np.egress.database.ports | nindent 4 }}
{{- end }}
{{- end }}

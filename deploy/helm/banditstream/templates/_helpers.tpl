{{/* The name of a component's objects: <release>-<component>. */}}
{{- define "banditstream.name" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels every object carries. */}}
{{- define "banditstream.labels" -}}
app.kubernetes.io/part-of: banditstream
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The labels that select a component's pods. */}}
{{- define "banditstream.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/*
A component's Deployment. Arguments: root (the chart's context), name (the
component: bandit-ingest, bandit-sweeper, bandit-score), binary (the
command) and c (the component's values).
*/}}
{{- define "banditstream.deployment" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $v := $root.Values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "banditstream.name" . }}
  labels:
    {{- include "banditstream.labels" $root | nindent 4 }}
    app.kubernetes.io/name: {{ .name }}
spec:
  replicas: {{ $c.replicas }}
  selector:
    matchLabels:
      {{- include "banditstream.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "banditstream.labels" $root | nindent 8 }}
        app.kubernetes.io/name: {{ .name }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- if $v.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $c.opsPort | quote }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ printf "%s:%s" $v.image.repository ($v.image.tag | default $root.Chart.AppVersion) | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          command: [{{ .binary | quote }}]
          env:
            - name: BANDITSTREAM_OPS_ADDR
              value: {{ printf ":%v" $c.opsPort | quote }}
            {{- range $name, $value := $c.env }}
            - name: {{ $name }}
              value: {{ $value | toString | quote }}
            {{- end }}
            {{- range $name, $value := $v.extraEnv }}
            - name: {{ $name }}
              value: {{ $value | toString | quote }}
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ printf "%s-config" $root.Release.Name }}
            - secretRef:
                name: {{ $v.secret.name }}
                optional: {{ $v.secret.optional }}
          ports:
            - name: ops
              containerPort: {{ $c.opsPort }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: ops
            periodSeconds: {{ $c.probes.periodSeconds }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: ops
            periodSeconds: {{ $c.probes.readinessPeriodSeconds }}
            failureThreshold: {{ $c.probes.readinessFailureThreshold }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          {{- with $v.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* A component's Service (the ops port) and ServiceMonitor. */}}
{{- define "banditstream.monitor" -}}
{{- $root := .root -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "banditstream.name" . }}
  labels:
    {{- include "banditstream.labels" $root | nindent 4 }}
    app.kubernetes.io/name: {{ .name }}
spec:
  clusterIP: None
  selector:
    {{- include "banditstream.selector" . | nindent 4 }}
  ports:
    - name: ops
      port: {{ .c.opsPort }}
      targetPort: ops
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "banditstream.name" . }}
  labels:
    {{- include "banditstream.labels" $root | nindent 4 }}
    app.kubernetes.io/name: {{ .name }}
    {{- with $root.Values.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "banditstream.selector" . | nindent 6 }}
  endpoints:
    - port: ops
      path: /metrics
      interval: {{ $root.Values.serviceMonitor.interval }}
{{- end -}}

package config

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func envOf(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := kv[k]
		return v, ok
	}
}

// Tracing is off unless the environment turns it on, and refuses what it
// cannot do.
func TestTracingOffByDefault(t *testing.T) {
	ctx := context.Background()
	for name, env := range map[string]map[string]string{
		"nothing set":      {},
		"exporter none":    {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		"the SDK disabled": {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"},
	} {
		tracer, stop, err := Tracing(ctx, "svc", envOf(env))
		if err != nil || tracer != nil || stop(ctx) != nil {
			t.Errorf("%s: tracer %v, err %v; want none", name, tracer, err)
		}
	}
	for name, env := range map[string]map[string]string{
		"zipkin":    {"OTEL_TRACES_EXPORTER": "zipkin"},
		"http/json": {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
	} {
		if _, _, err := Tracing(ctx, "svc", envOf(env)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// With an OTLP endpoint set, spans reach it over OTLP/HTTP with the
// service name and the resource attributes of the environment.
func TestTracingExportsByOTLP(t *testing.T) {
	var mu sync.Mutex
	var got []*collector.ExportTraceServiceRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &collector.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&collector.ExportTraceServiceResponse{})
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	ctx := context.Background()
	// The exporter reads the process's environment, as the daemons do.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	tracer, stop, err := Tracing(ctx, "bandit-score", os.LookupEnv)
	if err != nil || tracer == nil {
		t.Fatalf("tracer %v, err %v", tracer, err)
	}
	_, span := tracer.Start(ctx, "score batch")
	span.End()
	if err := stop(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || len(got[0].ResourceSpans) != 1 {
		t.Fatalf("%d exports", len(got))
	}
	rs := got[0].ResourceSpans[0]
	attrs := map[string]string{}
	for _, kv := range rs.GetResource().GetAttributes() {
		attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	if attrs["service.name"] != "bandit-score" || attrs["deployment.environment.name"] != "test" {
		t.Errorf("resource %v", attrs)
	}
	ss := rs.GetScopeSpans()
	if len(ss) != 1 || ss[0].GetScope().GetName() != TracerName || len(ss[0].GetSpans()) != 1 || ss[0].GetSpans()[0].GetName() != "score batch" {
		t.Errorf("scope spans %v", ss)
	}
}

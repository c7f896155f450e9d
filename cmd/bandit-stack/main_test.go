package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/deploy/local/stacktest"
)

func TestParseTopicSpec(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want []topicSpec
		err  bool
	}{
		{"default", defaultTopicSpec, []topicSpec{{"interactions", 6}, {"score-requests", 6}, {"score-results", 6}, {"interactions.dlq", 1}, {"score-requests.dlq", 1}}, false},
		{"spaces and trailing comma", " a:1 , b:3,", []topicSpec{{"a", 1}, {"b", 3}}, false},
		{"no count", "a", nil, true},
		{"zero partitions", "a:0", nil, true},
		{"not a number", "a:x", nil, true},
		{"empty name", ":3", nil, true},
		{"nothing", " , ", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTopicSpec(tc.spec)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"frobnicate"}, &out, &errOut); err == nil {
		t.Fatal("unknown command accepted")
	}
	if !strings.Contains(errOut.String(), "usage: bandit-stack") {
		t.Errorf("no usage printed: %q", errOut.String())
	}
}

// Creating topics twice is harmless; a count that grew is applied; a count
// that shrank leaves the topic as it is.
func TestEnsureTopicsIdempotent(t *testing.T) {
	brokers := stacktest.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := config.Kafka{Brokers: brokers, ClientID: "test", Timeout: 10 * time.Second}
	name := stacktest.UniqueName("it_topics")
	t.Cleanup(func() {
		client, err := cfg.Client()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{name}})
	})
	steps := []struct {
		ask, want int
		says      string
	}{
		{2, 2, "created with 2"},
		{2, 2, "exists with 2"},
		{4, 4, "grown to 4"},
		{3, 4, "exists with 4"},
	}
	for _, s := range steps {
		var out bytes.Buffer
		if err := ensureTopics(ctx, cfg, []topicSpec{{name, s.ask}}, 1, &out); err != nil {
			t.Fatalf("ask %d partitions: %v", s.ask, err)
		}
		if !strings.Contains(out.String(), s.says) {
			t.Errorf("ask %d: output %q does not say %q", s.ask, out.String(), s.says)
		}
		got, err := partitionCounts(ctx, mustClient(t, cfg), []string{name})
		if err != nil {
			t.Fatal(err)
		}
		if got[name] != s.want {
			t.Fatalf("ask %d: topic has %d partitions, want %d", s.ask, got[name], s.want)
		}
	}
}

// The check command fails, naming the service, when nothing listens.
func TestCheckReportsUnreachableService(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"check", "-redis-addr", "127.0.0.1:1", "redis"}
	err := run(context.Background(), args, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "redis:") {
		t.Fatalf("check of a closed port: %v", err)
	}
}

func TestCheckAllOnLocalStack(t *testing.T) {
	brokers := stacktest.KafkaBrokers(t)
	redisAddr := stacktest.RedisAddr(t)
	cql := stacktest.CQLHosts(t)
	var out, errOut bytes.Buffer
	// The CQL credentials come from a configuration file (and not from
	// the environment, which would win over it).
	user, password := stacktest.CQLCredentials()
	for _, name := range []string{"BANDITSTREAM_CQL_USERNAME", "BANDITSTREAM_CQL_PASSWORD"} {
		if v, ok := os.LookupEnv(name); ok {
			os.Unsetenv(name)
			t.Cleanup(func() { os.Setenv(name, v) })
		}
	}
	file := filepath.Join(t.TempDir(), "banditstream.env")
	if err := os.WriteFile(file, []byte("BANDITSTREAM_CQL_USERNAME="+user+"\nBANDITSTREAM_CQL_PASSWORD="+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"check", "-kafka-brokers", strings.Join(brokers, ","), "-redis-addr", redisAddr,
		"-cql-hosts", strings.Join(cql, ","), "-config", file, "all"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("check all: %v\n%s", err, errOut.String())
	}
	for _, svc := range []string{"kafka", "redis", "cql"} {
		if !strings.Contains(out.String(), svc+": serving") {
			t.Errorf("output %q does not report %s serving", out.String(), svc)
		}
	}
}

func mustClient(t *testing.T, cfg config.Kafka) *kafka.Client {
	t.Helper()
	c, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Flags after the service would be ignored by the flag package: refused.
func TestCheckRefusesFlagsAfterTheService(t *testing.T) {
	err := run(context.Background(), []string{"check", "redis", "-redis-password", "pw-42"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "flags go before the service") || strings.Contains(err.Error(), "pw-42") {
		t.Fatalf("error %v", err)
	}
}

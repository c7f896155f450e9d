package main

import (
	"net"
	"os"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

// The ingest service in deploy/compose sets only variables bandit-ingest
// reads, each to a value it accepts, and points at services that exist.
func TestComposeIngestService(t *testing.T) {
	data, err := os.ReadFile("../../deploy/compose/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			DependsOn   map[string]any    `yaml:"depends_on"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	s, ok := c.Services["ingest"]
	if !ok {
		t.Fatal("service ingest missing")
	}
	if len(s.Command) == 0 || s.Command[0] != "bandit-ingest" {
		t.Fatalf("ingest runs %v", s.Command)
	}
	var o options
	fs := newFlags(&o)
	known := config.EnvNames(fs)
	for name := range s.Environment {
		if !slices.Contains(known, name) {
			t.Errorf("ingest sets %s, which bandit-ingest does not read", name)
		}
	}
	if err := config.Parse(fs, s.Command[1:], func(k string) (string, bool) { v, ok := s.Environment[k]; return v, ok }); err != nil {
		t.Fatalf("bandit-ingest rejects the compose configuration: %v", err)
	}
	if err := o.conns.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, hostport := range append(append(o.conns.Kafka.Brokers, o.conns.CQL.Hosts...), o.conns.Redis.Addr) {
		host, _, err := net.SplitHostPort(hostport)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Services[host]; !ok {
			t.Errorf("ingest points at %s, not a compose service", hostport)
		}
	}
	if _, ok := s.DependsOn["init"]; !ok {
		t.Error("ingest does not wait for init (topics)")
	}
}

func TestFlagsRejectBadMode(t *testing.T) {
	err := run(t.Context(), []string{"-mode", "sideways"}, os.Stderr)
	if err == nil {
		t.Fatal("bad mode accepted")
	}
}

package main

import (
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		DependsOn   map[string]any    `yaml:"depends_on"`
	} `yaml:"services"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile("../../deploy/compose/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("parsing docker-compose.yml: %v", err)
	}
	return c
}

func portOf(t *testing.T, hostport string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// The compose stack publishes each store on the port the binaries use by
// default, so the binaries work against it unconfigured.
func TestComposeHostPortsMatchDefaults(t *testing.T) {
	c := loadCompose(t)
	want := map[string]string{
		"kafka":     portOf(t, config.DefaultKafkaBrokers),
		"scylla":    portOf(t, config.DefaultCQLHosts),
		"dragonfly": portOf(t, config.DefaultRedisAddr),
	}
	for svc, port := range want {
		s, ok := c.Services[svc]
		if !ok {
			t.Errorf("service %s missing", svc)
			continue
		}
		if !slices.Contains(s.Ports, port+":"+port) {
			t.Errorf("service %s publishes %v, want %s:%s", svc, s.Ports, port, port)
		}
		if s.Image == "" || strings.HasSuffix(s.Image, ":latest") || !strings.Contains(s.Image, ":") {
			t.Errorf("service %s image %q is not pinned", svc, s.Image)
		}
	}
}

// The project's services set only variables the binary reads, point them at
// services that exist, and wait for the stores.
func TestComposeInitServiceConfiguration(t *testing.T) {
	c := loadCompose(t)
	s, ok := c.Services["init"]
	if !ok {
		t.Fatal("service init missing")
	}
	if len(s.Command) < 2 || s.Command[0] != "bandit-stack" || s.Command[1] != "topics" {
		t.Fatalf("init runs %v, want bandit-stack topics", s.Command)
	}
	fs, _, _ := commandFlags("topics", topicsCommand)
	known := config.EnvNames(fs)
	for name := range s.Environment {
		if !slices.Contains(known, name) {
			t.Errorf("init sets %s, which bandit-stack topics does not read (it reads %v)", name, known)
		}
	}
	targets := map[string]string{
		"BANDITSTREAM_KAFKA_BROKERS": "kafka",
		"BANDITSTREAM_REDIS_ADDR":    "dragonfly",
		"BANDITSTREAM_CQL_HOSTS":     "scylla",
	}
	for env, svc := range targets {
		host, _, err := net.SplitHostPort(s.Environment[env])
		if err != nil || host != svc {
			t.Errorf("%s = %q, want an address of service %s", env, s.Environment[env], svc)
		}
		if _, ok := s.DependsOn[svc]; !ok {
			t.Errorf("init does not wait for %s", svc)
		}
	}
	// The topics it creates are the ones the pipeline uses.
	topics, err := parseTopicSpec(s.Environment["BANDITSTREAM_TOPICS"])
	if err != nil {
		t.Fatal(err)
	}
	defaults, _ := parseTopicSpec(defaultTopicSpec)
	if len(topics) != len(defaults) {
		t.Fatalf("init creates %v, the defaults are %v", topics, defaults)
	}
	for i := range topics {
		if topics[i].name != defaults[i].name {
			t.Errorf("init creates %v, the defaults are %v", topics, defaults)
		}
	}
}

// Package composetest checks the services of deploy/compose against the
// binaries they run: tests of each cmd/ package share it.
package composetest

import (
	"flag"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

// Service is one service of the compose file.
type Service struct {
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]any    `yaml:"depends_on"`
}

// Services reads deploy/compose/docker-compose.yml.
func Services(t testing.TB) map[string]Service {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "compose", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]Service `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c.Services
}

// CheckService checks that service name runs binary, sets only variables
// the binary reads (its flags fs), each to a value it accepts, points at
// services that exist, and waits for the topics (init).
func CheckService(t *testing.T, name, binary string, fs *flag.FlagSet, conns *config.Connections) {
	t.Helper()
	services := Services(t)
	s, ok := services[name]
	if !ok {
		t.Fatalf("service %s missing", name)
	}
	if len(s.Command) == 0 || s.Command[0] != binary {
		t.Fatalf("%s runs %v, want %s", name, s.Command, binary)
	}
	known := config.EnvNames(fs)
	for v := range s.Environment {
		if !slices.Contains(known, v) {
			t.Errorf("%s sets %s, which %s does not read", name, v, binary)
		}
	}
	if err := config.Parse(fs, s.Command[1:], func(k string) (string, bool) { v, ok := s.Environment[k]; return v, ok }); err != nil {
		t.Fatalf("%s rejects the compose configuration: %v", binary, err)
	}
	if err := conns.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, hostport := range append(append(conns.Kafka.Brokers, conns.CQL.Hosts...), conns.Redis.Addr) {
		host, _, err := net.SplitHostPort(hostport)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := services[host]; !ok {
			t.Errorf("%s points at %s, not a compose service", name, hostport)
		}
	}
	if _, ok := s.DependsOn["init"]; !ok {
		t.Errorf("%s does not wait for init (topics)", name)
	}
}

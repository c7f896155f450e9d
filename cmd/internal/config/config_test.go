package config_test

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

func newFlags(c *config.Connections) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Register(fs)
	return fs
}

func TestParsePrecedence(t *testing.T) {
	env := map[string]string{
		"BANDITSTREAM_KAFKA_BROKERS": "k1:9092,k2:9092",
		"BANDITSTREAM_REDIS_ADDR":    "env-redis:6379",
		"BANDITSTREAM_CQL_TIMEOUT":   "3s",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		name    string
		args    []string
		brokers []string
		redis   string
		timeout time.Duration
	}{
		{"defaults overridden by env", nil, []string{"k1:9092", "k2:9092"}, "env-redis:6379", 3 * time.Second},
		{"flag beats env", []string{"-redis-addr", "flag-redis:6380"}, []string{"k1:9092", "k2:9092"}, "flag-redis:6380", 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c config.Connections
			if err := config.Parse(newFlags(&c), tc.args, lookup); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Kafka.Brokers, tc.brokers) || c.Redis.Addr != tc.redis || c.CQL.Timeout != tc.timeout {
				t.Fatalf("got brokers %v redis %q timeout %v", c.Kafka.Brokers, c.Redis.Addr, c.CQL.Timeout)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The configuration file: the command line wins over the environment, the
// environment over the file; comments, blank lines, quotes and "export"
// are understood; -config may come from the environment.
func TestConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "banditstream.env")
	file := `# the local stack
BANDITSTREAM_KAFKA_BROKERS=file-k1:9092,file-k2:9092

export BANDITSTREAM_REDIS_ADDR = "file-redis:6379"
BANDITSTREAM_REDIS_PASSWORD='from file'
BANDITSTREAM_CQL_TIMEOUT=7s
`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"BANDITSTREAM_CONFIG": path, "BANDITSTREAM_CQL_TIMEOUT": "3s"}
	var c config.Connections
	err := config.Parse(newFlags(&c), []string{"-kafka-brokers", "flag-k:9092"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Kafka.Brokers, ",") != "flag-k:9092" || c.CQL.Timeout != 3*time.Second ||
		c.Redis.Addr != "file-redis:6379" || c.Redis.Password != "from file" {
		t.Fatalf("brokers %v (want the flag's), CQL timeout %v (the environment's), Redis %q password %q (the file's)",
			c.Kafka.Brokers, c.CQL.Timeout, c.Redis.Addr, c.Redis.Password)
	}
}

// A configuration file with an unknown setting, a line without "=" or a
// bad value fails with the file, the line and the variable, never a value.
func TestConfigFileErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.env")
	file := "BANDITSTREAM_REDIS_DB=s3cret-not-a-number\nBANDITSTREAM_KAFKA_BROKRES=k:9092\njust words\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	var c config.Connections
	err := config.Parse(newFlags(&c), []string{"-config", path}, func(string) (string, bool) { return "", false })
	if err == nil {
		t.Fatal("bad file accepted")
	}
	for _, want := range []string{path + " line 1: invalid value of BANDITSTREAM_REDIS_DB", "line 2: BANDITSTREAM_KAFKA_BROKRES is not a setting", "line 3: not VARIABLE=value"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q shows a value", err)
	}
	if err := config.Parse(newFlags(&c), []string{"-config", path + ".missing"}, nil); err == nil || !strings.Contains(err.Error(), "-config") {
		t.Errorf("missing file: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	var c config.Connections
	if err := config.Parse(newFlags(&c), nil, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Kafka.Brokers, ",") != config.DefaultKafkaBrokers || c.Redis.Addr != config.DefaultRedisAddr ||
		strings.Join(c.CQL.Hosts, ",") != config.DefaultCQLHosts || c.CQL.Keyspace != config.DefaultCQLKeyspace {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

// A bad value from the environment names the variable, never the value:
// the variable may hold a password.
func TestEnvErrorHidesValue(t *testing.T) {
	var c config.Connections
	env := map[string]string{"BANDITSTREAM_REDIS_DB": "s3cret-not-a-number"}
	err := config.Parse(newFlags(&c), nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil {
		t.Fatal("bad value accepted")
	}
	if !strings.Contains(err.Error(), "BANDITSTREAM_REDIS_DB") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %q should name the variable and hide the value", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.Connections)
		want   string
	}{
		{"no brokers", func(c *config.Connections) { c.Kafka.Brokers = nil }, "kafka-brokers"},
		{"broker without port", func(c *config.Connections) { c.Kafka.Brokers = []string{"kafka"} }, "kafka-brokers"},
		{"redis without port", func(c *config.Connections) { c.Redis.Addr = "redis" }, "redis-addr"},
		{"no keyspace", func(c *config.Connections) { c.CQL.Keyspace = "" }, "cql-keyspace"},
		{"no cql hosts", func(c *config.Connections) { c.CQL.Hosts = nil }, "cql-hosts"},
		{"zero kafka timeout", func(c *config.Connections) { c.Kafka.Timeout = 0 }, "kafka-timeout must be positive"},
		{"zero cql timeout", func(c *config.Connections) { c.CQL.Timeout = 0 }, "cql-timeout must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c config.Connections
			_ = config.Parse(newFlags(&c), nil, func(string) (string, bool) { return "", false })
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func TestRedactedHidesPasswords(t *testing.T) {
	c := config.Connections{Redis: config.Redis{Password: "hunter2"}, CQL: config.CQL{Password: "swordfish"}}
	r := c.Redacted()
	if s := strings.Join([]string{r.Redis.Password, r.CQL.Password}, " "); strings.Contains(s, "hunter2") || strings.Contains(s, "swordfish") {
		t.Fatalf("Redacted leaks: %+v", r)
	}
	if c.Redis.Password != "hunter2" {
		t.Fatal("Redacted changed the original")
	}
}

func TestEnvNames(t *testing.T) {
	if got := config.EnvName("kafka-brokers"); got != "BANDITSTREAM_KAFKA_BROKERS" {
		t.Fatalf("EnvName = %q", got)
	}
	var c config.Connections
	names := config.EnvNames(newFlags(&c))
	for _, want := range []string{"BANDITSTREAM_KAFKA_BROKERS", "BANDITSTREAM_REDIS_PASSWORD", "BANDITSTREAM_CQL_HOSTS"} {
		if !slices.Contains(names, want) {
			t.Errorf("EnvNames lacks %s: %v", want, names)
		}
	}
}

func TestObservabilityStart(t *testing.T) {
	var buf bytes.Buffer
	dir := t.TempDir()
	o := config.Observability{LogLevel: "warn", CPUProfile: filepath.Join(dir, "cpu.prof"), AllocProfile: filepath.Join(dir, "alloc.prof")}
	log, stop, err := o.Start(&buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	stop()
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"msg":"shown"`) {
		t.Fatalf("log output %q", out)
	}
	for _, p := range []string{o.CPUProfile, o.AllocProfile} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Fatalf("profile %s: %v", p, err)
		}
	}
	// An allocation profile that cannot be written fails at start.
	bad := config.Observability{LogLevel: "info", AllocProfile: filepath.Join(dir, "missing", "alloc.prof")}
	if _, _, err := bad.Start(&buf); err == nil || !strings.Contains(err.Error(), "-alloc-profile") {
		t.Fatalf("unwritable allocation profile: %v", err)
	}
	if _, _, err := (&config.Observability{LogLevel: "loud"}).Start(&buf); err == nil || !strings.Contains(err.Error(), "-log-level") {
		t.Fatalf("bad level: %v", err)
	}
}

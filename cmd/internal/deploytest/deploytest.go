// Package deploytest checks the deployment files in deploy/ (the compose
// services, the Kubernetes manifests) against the binaries they run: tests
// of each cmd/ package share it.
package deploytest

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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
	data, err := os.ReadFile(deployFile("compose", "docker-compose.yml"))
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

func deployFile(parts ...string) string { return repoFile(append([]string{"deploy"}, parts...)...) }

// repoFile is the path of a file of the repository, from its root.
func repoFile(parts ...string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(append([]string{filepath.Dir(file), "..", "..", ".."}, parts...)...)
}

// Container is what the checks read of a Kubernetes container.
type Container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name     string `yaml:"name"`
			Optional bool   `yaml:"optional"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *Probe `yaml:"livenessProbe"`
	ReadinessProbe *Probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

// Probe is an HTTP probe.
type Probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
				Containers                    []Container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// manifests reads every document of every file in deploy/k8s.
func manifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(deployFile("k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	var out []manifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, decodeManifests(t, f, data)...)
	}
	return out
}

func decodeManifests(t *testing.T, source string, data []byte) []manifest {
	t.Helper()
	var out []manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var m manifest
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		if m.APIVersion == "" && m.Kind == "" && m.Metadata.Name == "" {
			continue // an empty document (helm template writes some)
		}
		if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
			t.Fatalf("%s: a document without apiVersion, kind or name", source)
		}
		out = append(out, m)
	}
	return out
}

// Chart is the Helm chart's folder.
func Chart() string { return deployFile("helm", "banditstream") }

// ChartRelease is the release name the checks render the chart as.
const ChartRelease = "banditstream"

// Helm returns the pinned helm binary that make installs into .local/bin
// (make clients), or fails; go test -short skips.
func Helm(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs helm (make clients); not run with -short")
	}
	found, _ := filepath.Glob(repoFile(".local", "bin", "helm-v*"))
	if len(found) == 0 {
		t.Fatal("helm is not installed in .local/bin (make clients installs it; make test runs that)")
	}
	slices.Sort(found)
	return found[len(found)-1]
}

// RenderChart runs helm template on the chart as ChartRelease with the
// values files given (relative to the chart's folder) and returns what it
// printed.
func RenderChart(t testing.TB, values ...string) []byte {
	t.Helper()
	args := []string{"template", ChartRelease, Chart()}
	for _, v := range values {
		args = append(args, "-f", filepath.Join(Chart(), v))
	}
	cmd := exec.Command(Helm(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// ChartValues are the values files the chart is checked with: the
// defaults (none) and each of the chart's ci/*-values.yaml.
func ChartValues(t testing.TB) [][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(Chart(), "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in %s/ci: %v", Chart(), err)
	}
	sets := [][]string{nil}
	for _, f := range files {
		sets = append(sets, []string{filepath.Join("ci", filepath.Base(f))})
	}
	return sets
}

// goRuntimeEnv are the variables a container may set besides the
// binary's own, and those of OpenTelemetry (OTEL_*).
var goRuntimeEnv = []string{"GOMEMLIMIT", "GOGC", "GOMAXPROCS"}

func runtimeEnv(name string) bool {
	return slices.Contains(goRuntimeEnv, name) || strings.HasPrefix(name, "OTEL_")
}

// CheckDeployment checks the Kubernetes Deployment called name: it runs
// binary with arguments and environment (its own, the ConfigMaps it
// reads) that the binary's flags fs accept and the connections validate;
// the selector matches the pod labels; liveness and readiness probe
// /healthz and /readyz on the port the daemon serves them (-ops-addr); it
// requests CPU and memory, references its Secret as optional, and gives
// SIGTERM more time than the drain timeout.
func CheckDeployment(t *testing.T, name, binary string, fs *flag.FlagSet, conns *config.Connections) {
	t.Helper()
	checkDeployment(t, "deploy/k8s", manifests(t), name, binary, fs, conns)
}

// CheckChartDeployment is CheckDeployment on the Deployment of component
// name that the Helm chart renders with the values files given.
func CheckChartDeployment(t *testing.T, name, binary string, fs *flag.FlagSet, conns *config.Connections, values ...string) {
	t.Helper()
	where := fmt.Sprintf("the chart with values %v", values)
	checkDeployment(t, where, decodeManifests(t, where, RenderChart(t, values...)), ChartRelease+"-"+name, binary, fs, conns)
}

func checkDeployment(t *testing.T, where string, all []manifest, name, binary string, fs *flag.FlagSet, conns *config.Connections) {
	t.Helper()
	maps := map[string]map[string]string{}
	var dep *manifest
	for i, m := range all {
		switch {
		case m.Kind == "ConfigMap":
			maps[m.Metadata.Name] = m.Data
		case m.Kind == "Deployment" && m.Metadata.Name == name:
			dep = &all[i]
		}
	}
	if dep == nil {
		t.Fatalf("no Deployment %s in %s", name, where)
	}
	if dep.APIVersion != "apps/v1" {
		t.Errorf("%s: apiVersion %s", name, dep.APIVersion)
	}
	for k, v := range dep.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod labels", name, k, v)
		}
	}
	if len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", name, len(dep.Spec.Template.Spec.Containers))
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if len(c.Command) != 1 || c.Command[0] != binary || c.Image == "" {
		t.Fatalf("%s runs %v from %q, want %s", name, c.Command, c.Image, binary)
	}
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			data, ok := maps[from.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s reads ConfigMap %s, which %s does not define", name, from.ConfigMapRef.Name, where)
			}
			for k, v := range data {
				env[k] = v
			}
		case from.SecretRef != nil && !from.SecretRef.Optional:
			t.Errorf("%s needs Secret %s; make it optional (a deployment without passwords has none)", name, from.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	known := config.EnvNames(fs)
	for v := range env {
		if !slices.Contains(known, v) && !runtimeEnv(v) {
			t.Errorf("%s sets %s, which %s does not read", name, v, binary)
		}
	}
	if err := config.Parse(fs, c.Args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatalf("%s rejects the manifest's configuration: %v", binary, err)
	}
	if err := conns.Validate(); err != nil {
		t.Fatal(err)
	}
	ops := fs.Lookup("ops-addr").Value.String()
	_, portText, err := net.SplitHostPort(ops)
	if err != nil {
		t.Fatalf("%s: -ops-addr %q: %v", name, ops, err)
	}
	port, _ := strconv.Atoi(portText)
	for probe, want := range map[string]string{"liveness": "/healthz", "readiness": "/readyz"} {
		p := c.LivenessProbe
		if probe == "readiness" {
			p = c.ReadinessProbe
		}
		if p == nil || p.HTTPGet.Path != want {
			t.Errorf("%s: %s probe %+v, want GET %s", name, probe, p, want)
			continue
		}
		found := false
		for _, cp := range c.Ports {
			if cp.Name == p.HTTPGet.Port && cp.ContainerPort == port {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: %s probe port %q is not the ops port %d", name, probe, p.HTTPGet.Port, port)
		}
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("%s: resources %+v: want CPU and memory requests and a memory limit", name, c.Resources)
	}
	drain, err := time.ParseDuration(fs.Lookup("drain-timeout").Value.String())
	if err != nil {
		t.Fatal(err)
	}
	if grace := time.Duration(dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second; grace <= drain {
		t.Errorf("%s: terminationGracePeriodSeconds %s is not above the drain timeout %s", name, grace, drain)
	}
}

// FlagsDocumented checks that docs/configuration.md names every flag of fs
// (as `-name` in a table or text, or [-name …] in a usage line), so that
// the reference cannot fall behind the binaries.
func FlagsDocumented(t *testing.T, fs *flag.FlagSet) {
	t.Helper()
	doc, err := os.ReadFile(repoFile("docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		name := "-" + f.Name
		for _, open := range []string{"`", "[", " "} {
			for _, end := range []string{"`", ",", " ", "]", "="} {
				if bytes.Contains(doc, []byte(open+name+end)) {
					return
				}
			}
		}
		t.Errorf("%s: %s is not in docs/configuration.md", fs.Name(), name)
	})
}

package deploytest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kubernetesVersion is the Kubernetes API whose schemas the chart's
// objects are validated against (kubernetes-validate carries them).
const kubernetesVersion = "1.37.0"

// The Helm chart passes helm lint (strict) and renders, with the default
// values and with each of its ci/ values files, objects that validate
// against the Kubernetes API's schemas and, for the ServiceMonitors, the
// Prometheus Operator's CRD; values its schema refuses make helm fail.
func TestHelmChart(t *testing.T) {
	helm := Helm(t)
	python := repoFile(".local", "python", "bin", "python")
	crds, _ := filepath.Glob(repoFile(".local", "crds", "*.yaml"))
	if _, err := os.Stat(python); err != nil || len(crds) == 0 {
		t.Fatalf("the Python clients or the CRDs are not installed (make clients): %v, %d CRDs", err, len(crds))
	}
	chart := Chart()
	want := map[int]int{0: 4, 1: 10} // objects: ConfigMap and Deployments; with Services and ServiceMonitors
	for i, values := range ChartValues(t) {
		var args []string
		for _, v := range values {
			args = append(args, "-f", filepath.Join(chart, v))
		}
		if out, err := exec.Command(helm, append([]string{"lint", "--strict", chart}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("helm lint %v: %v\n%s", values, err, out)
		}
		rendered := filepath.Join(t.TempDir(), "rendered.yaml")
		if err := os.WriteFile(rendered, RenderChart(t, values...), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(python, deployFile("helm", "validate.py"), strings.Join(crds, ","), kubernetesVersion, rendered)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("validating the chart rendered with %v: %v\n%s", values, err, out)
		}
		valid := 0
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "valid ") {
				valid++
			}
		}
		if n, ok := want[i]; ok && valid != n {
			t.Errorf("values %v: %d valid objects, want %d:\n%s", values, valid, n, out)
		}
		if i > 0 && !bytes.Contains(out, []byte("ServiceMonitor/banditstream-bandit-score (CustomResourceDefinition schema)")) {
			t.Errorf("values %v: the ServiceMonitor was not validated against its CRD:\n%s", values, out)
		}
		t.Logf("values %v: %d objects valid", values, valid)
	}
	for name, set := range map[string]string{
		"a negative replica count":          "score.replicas=-1",
		"a variable of no binary":           "score.env.HOME=/root",
		"a misspelt key":                    "score.replica=2",
		"a port out of range":               "ingest.opsPort=70000",
		"a ServiceMonitor interval of text": "serviceMonitor.interval=often",
	} {
		out, err := exec.Command(helm, "template", ChartRelease, chart, "--set", set).CombinedOutput()
		if err == nil {
			t.Errorf("%s (%s): rendered", name, set)
		} else if !strings.Contains(string(out), "values don't meet the specifications of the schema") && !strings.Contains(string(out), "at '/") {
			t.Errorf("%s: refused, but not by the values' schema:\n%s", name, out)
		}
	}
}

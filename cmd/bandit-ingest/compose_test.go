package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/banditstream/banditstream/cmd/internal/deploytest"
)

// The ingest service in deploy/compose sets only variables bandit-ingest
// reads, each to a value it accepts, and points at services that exist.
func TestComposeIngestService(t *testing.T) {
	var o options
	deploytest.CheckService(t, "ingest", "bandit-ingest", newFlags(&o), &o.conns)
}

func TestFlagsRejectBadMode(t *testing.T) {
	err := run(t.Context(), []string{"-mode", "sideways"}, os.Stderr)
	if err == nil {
		t.Fatal("bad mode accepted")
	}
}

// The Kubernetes Deployments of ingest and of the sweeper run bandit-ingest
// with a configuration it accepts, probes on its ops port and resources.
func TestKubernetesIngest(t *testing.T) {
	for _, name := range []string{"bandit-ingest", "bandit-sweeper"} {
		t.Run(name, func(t *testing.T) {
			var o options
			deploytest.CheckDeployment(t, name, "bandit-ingest", newFlags(&o), &o.conns)
		})
	}
}

// The Helm chart's ingest and sweeper Deployments, with the default values
// and each of the chart's ci/ values files: the same checks as the
// manifests'.
func TestHelmIngest(t *testing.T) {
	for _, values := range deploytest.ChartValues(t) {
		for _, name := range []string{"bandit-ingest", "bandit-sweeper"} {
			t.Run(fmt.Sprint(name, values), func(t *testing.T) {
				var o options
				deploytest.CheckChartDeployment(t, name, "bandit-ingest", newFlags(&o), &o.conns, values...)
			})
		}
	}
}

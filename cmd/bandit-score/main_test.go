package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/banditstream/banditstream/cmd/internal/deploytest"
	"github.com/banditstream/banditstream/store/state"
)

// The score service in deploy/compose sets only variables bandit-score
// reads, each to a value it accepts, and points at services that exist.
func TestComposeScoreService(t *testing.T) {
	var o options
	deploytest.CheckService(t, "score", "bandit-score", newFlags(&o), &o.conns)
}

func TestParseWeights(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     [state.NumEventTypes]float64
		err      string
	}{
		{name: "default", in: "click=1", want: [state.NumEventTypes]float64{0, 1, 0, 0, 0}},
		{name: "several, spaced", in: "click=1, order = 5,add_to_cart=0.5", want: [state.NumEventTypes]float64{0, 1, 0, 0.5, 5}},
		{name: "empty", in: "", want: [state.NumEventTypes]float64{}},
		{name: "impressions are the trials", in: "impression=1", err: "not type=weight"},
		{name: "unknown type", in: "purchase=1", err: "not type=weight"},
		{name: "not a number", in: "click=lots", err: "invalid syntax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWeights(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("%v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestFlagsRejectBadModel(t *testing.T) {
	for _, args := range [][]string{
		{"-prior-alpha", "0"},
		{"-lambda", "-1"},
		{"-max-k", "0"},
		{"-cache-max-age", "2s", "-cache-max-stale", "1s", "-sessions=false", "-redis-addr", "127.0.0.1:1"},
	} {
		if err := run(t.Context(), args, os.Stderr); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// The Kubernetes Deployment of the scorer runs bandit-score with a
// configuration it accepts, probes on its ops port and resources.
func TestKubernetesScore(t *testing.T) {
	var o options
	deploytest.CheckDeployment(t, "bandit-score", "bandit-score", newFlags(&o), &o.conns)
}

// The Helm chart's scorer Deployment, with the default values and each of
// the chart's ci/ values files: the same checks as the manifest's.
func TestHelmScore(t *testing.T) {
	for _, values := range deploytest.ChartValues(t) {
		t.Run(fmt.Sprint(values), func(t *testing.T) {
			var o options
			deploytest.CheckChartDeployment(t, "bandit-score", "bandit-score", newFlags(&o), &o.conns, values...)
		})
	}
}

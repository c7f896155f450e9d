package main

import (
	"os"
	"testing"

	"github.com/banditstream/banditstream/cmd/internal/composetest"
)

// The ingest service in deploy/compose sets only variables bandit-ingest
// reads, each to a value it accepts, and points at services that exist.
func TestComposeIngestService(t *testing.T) {
	var o options
	composetest.CheckService(t, "ingest", "bandit-ingest", newFlags(&o), &o.conns)
}

func TestFlagsRejectBadMode(t *testing.T) {
	err := run(t.Context(), []string{"-mode", "sideways"}, os.Stderr)
	if err == nil {
		t.Fatal("bad mode accepted")
	}
}

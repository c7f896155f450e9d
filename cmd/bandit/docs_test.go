package main

import (
	"flag"
	"testing"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/cmd/internal/deploytest"
)

func TestFlagsDocumented(t *testing.T) {
	for name, cmd := range commands {
		fs := flag.NewFlagSet("bandit "+name, flag.ContinueOnError)
		var conns config.Connections
		cmd.needs.register(fs, &conns)
		cmd.setup(fs, &conns)
		deploytest.FlagsDocumented(t, fs)
	}
}

package main

import (
	"testing"

	"github.com/banditstream/banditstream/cmd/internal/deploytest"
)

func TestFlagsDocumented(t *testing.T) {
	for name, setup := range commands {
		fs, _, _ := commandFlags(name, setup)
		deploytest.FlagsDocumented(t, fs)
	}
}

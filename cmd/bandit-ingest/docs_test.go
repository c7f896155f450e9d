package main

import (
	"testing"

	"github.com/banditstream/banditstream/cmd/internal/deploytest"
)

func TestFlagsDocumented(t *testing.T) {
	var o options
	deploytest.FlagsDocumented(t, newFlags(&o))
}

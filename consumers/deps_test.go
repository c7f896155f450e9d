package consumers_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The pipeline's stages and the tiering link no storage client: they speak
// store/state and interfaces, and cmd wires Redis and CQL in. depguard sees
// direct imports only; this sees everything that is linked.
func TestNoStorageClientLinked(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	for _, pkg := range []string{"../consumers", "../producers", "../store", "../store/state"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, banned := range []string{"github.com/redis/go-redis", "github.com/gocql/gocql", "github.com/scylladb/gocqlx"} {
				if strings.HasPrefix(dep, banned) {
					t.Errorf("%s links %s", pkg, dep)
				}
			}
		}
	}
}

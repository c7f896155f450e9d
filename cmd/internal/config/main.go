package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// ErrUsage is returned by a command that has printed its usage already:
// Main exits 1 without printing it again.
var ErrUsage = errors.New("usage")

// Main runs a binary: run gets a context that SIGINT or SIGTERM cancels (a
// second signal kills the process, as the default handler would), and an
// error exits 1 after being printed as "name: error".
func Main(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		if !errors.Is(err, ErrUsage) {
			fmt.Fprintln(os.Stderr, name+":", err)
		}
		stop()
		os.Exit(1)
	}
}

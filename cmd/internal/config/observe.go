package config

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
)

// Observability is the logging and profiling set-up the daemons share.
type Observability struct {
	LogLevel   string
	CPUProfile string
}

// Register defines -log-level and -cpu-profile on fs.
func (o *Observability) Register(fs *flag.FlagSet) {
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.CPUProfile, "cpu-profile", "", "write a CPU profile to this file until exit (for benchmarks)")
}

// Start returns a JSON logger on w at the chosen level and starts the CPU
// profile if one was asked for; stop ends the profile.
func (o *Observability) Start(w io.Writer) (log *slog.Logger, stop func(), err error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return nil, nil, fmt.Errorf("-log-level: %w", err)
	}
	log = slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	if o.CPUProfile == "" {
		return log, func() {}, nil
	}
	f, err := os.Create(o.CPUProfile)
	if err != nil {
		return nil, nil, fmt.Errorf("-cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("-cpu-profile: %w", err)
	}
	return log, func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

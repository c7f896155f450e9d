package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
)

// Observability is the logging and profiling set-up the daemons share.
type Observability struct {
	LogLevel     string
	CPUProfile   string
	AllocProfile string
	service      string // the flag set's name: the default OTEL service name
}

// Register defines -log-level, -cpu-profile and -alloc-profile on fs.
func (o *Observability) Register(fs *flag.FlagSet) {
	o.service = fs.Name()
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.CPUProfile, "cpu-profile", "", "write a CPU profile to this file until exit (for benchmarks)")
	fs.StringVar(&o.AllocProfile, "alloc-profile", "", "write an allocation profile (everything allocated since start) to this file at exit (for benchmarks)")
}

// Start returns a JSON logger on w at the chosen level and starts the CPU
// profile if one was asked for; stop ends the profile and writes the
// allocation profile.
func (o *Observability) Start(w io.Writer) (log *slog.Logger, stop func(), err error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return nil, nil, fmt.Errorf("-log-level: %w", err)
	}
	log = slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	stopCPU := func() {}
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return nil, nil, fmt.Errorf("-cpu-profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("-cpu-profile: %w", err)
		}
		stopCPU = func() {
			pprof.StopCPUProfile()
			f.Close()
		}
	}
	if o.AllocProfile != "" {
		// Fail at start, not at exit, on a path that cannot be written.
		f, err := os.Create(o.AllocProfile)
		if err != nil {
			stopCPU()
			return nil, nil, fmt.Errorf("-alloc-profile: %w", err)
		}
		f.Close()
	}
	return log, func() {
		stopCPU()
		if o.AllocProfile != "" {
			if err := writeAllocProfile(o.AllocProfile); err != nil {
				log.Error("writing the allocation profile", "err", err)
			}
		}
	}, nil
}

func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // the profile's figures are as of the last GC
	return errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
}

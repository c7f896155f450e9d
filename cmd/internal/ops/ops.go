// Package ops serves what operators and orchestrators ask a daemon:
// /metrics (Prometheus), /healthz (the process runs) and /readyz (every
// dependency answers). The daemons in cmd/ share it.
package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace starts every metric name.
const Namespace = "banditstream"

// Check is one dependency's readiness check; Run gets a context with a
// timeout.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Server serves the operations endpoints.
type Server struct {
	Registry *prometheus.Registry
	checks   []Check
	timeout  time.Duration
	log      *slog.Logger
}

// AddCheck adds a readiness check; call it before Serve.
func (s *Server) AddCheck(c Check) { s.checks = append(s.checks, c) }

// NewServer returns a server with a fresh registry holding the Go runtime
// and process collectors; components register theirs on Registry.
func NewServer(checks []Check, log *slog.Logger) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Server{Registry: reg, checks: checks, timeout: 2 * time.Second, log: log}
}

// Handler returns the endpoints' handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		failed := s.Ready(r.Context())
		if len(failed) == 0 {
			fmt.Fprintln(w, "ready")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		names := make([]string, 0, len(failed))
		for n := range failed {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(w, "%s: %v\n", n, failed[n])
		}
	})
	return mux
}

// Ready runs every check at once and returns the failures by name.
func (s *Server) Ready(ctx context.Context) map[string]error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	failed := map[string]error{}
	for _, c := range s.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil {
				mu.Lock()
				failed[c.Name] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

// Serve listens on addr and serves until ctx ends. An empty addr serves
// nothing and returns when ctx ends.
func (s *Server) Serve(ctx context.Context, addr string) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-ops-addr: %w", err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	s.log.Info("serving /metrics, /healthz, /readyz", "addr", ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Value is one sample of a Func metric.
type Value struct {
	V      float64
	Labels []string
}

// Func is a metric read when Prometheus scrapes: counters and gauges that
// components keep themselves (atomic counts, lag by partition).
type Func struct {
	Name, Help string
	Type       prometheus.ValueType
	Labels     []string
	Read       func() []Value
}

type funcs struct {
	descs []*prometheus.Desc
	fns   []Func
}

// Register registers fns on reg.
func Register(reg prometheus.Registerer, fns ...Func) error {
	c := &funcs{fns: fns}
	for _, f := range fns {
		c.descs = append(c.descs, prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", f.Name), f.Help, f.Labels, nil))
	}
	return reg.Register(c)
}

func (c *funcs) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *funcs) Collect(ch chan<- prometheus.Metric) {
	for i, f := range c.fns {
		for _, v := range f.Read() {
			ch <- prometheus.MustNewConstMetric(c.descs[i], f.Type, v.V, v.Labels...)
		}
	}
}

// One is a single unlabelled value.
func One(v int64) []Value { return []Value{{V: float64(v)}} }

// Histogram registers a histogram of seconds or counts on reg.
func Histogram(reg prometheus.Registerer, name, help string, buckets []float64, constLabels prometheus.Labels) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: name, Help: help, Buckets: buckets, ConstLabels: constLabels,
	})
	reg.MustRegister(h)
	return h
}

// Buckets for batch sizes and latencies.
var (
	RecordBuckets  = prometheus.ExponentialBuckets(1, 4, 9)         // 1 … 65536
	SecondsBuckets = prometheus.ExponentialBuckets(0.0005, 2.5, 12) // 0.5 ms … 30 s
)

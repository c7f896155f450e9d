package config

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/banditstream/banditstream/store/hot"
)

// Daemon is what bandit-ingest and bandit-score open before their work:
// the logger (and the profiles asked for), the hot tier, and Kafka's
// transport and dialer.
type Daemon struct {
	Log       *slog.Logger
	Redis     redis.UniversalClient
	Hot       *hot.Hot
	Transport *kafka.Transport
	Dialer    *kafka.Dialer
	// Tracer records the batches' spans when the OTEL_* environment turns
	// tracing on (see Tracing); nil otherwise.
	Tracer trace.Tracer
	close  []func()
}

// OpenDaemon starts the logging and profiles of o, and opens the hot tier
// of c with keys and the Kafka clients of c. Close releases them.
func OpenDaemon(o *Observability, c *Connections, keys hot.Keys, stderr io.Writer) (*Daemon, error) {
	d := &Daemon{}
	var stopProfile func()
	var err error
	if d.Log, stopProfile, err = o.Start(stderr); err != nil {
		return nil, err
	}
	d.close = append(d.close, stopProfile)
	tracer, stopTracing, err := Tracing(context.Background(), o.service, os.LookupEnv)
	if err != nil {
		d.Close()
		return nil, err
	}
	if tracer != nil {
		d.Tracer = tracer
		d.Log.Info("tracing on: spans exported by OTLP")
		d.close = append(d.close, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := stopTracing(ctx); err != nil {
				d.Log.Warn("flushing the spans", "err", err)
			}
		})
	}
	if d.Redis, d.Hot, err = c.Redis.Hot(keys); err != nil {
		d.Close()
		return nil, err
	}
	d.close = append(d.close, func() { _ = d.Redis.Close() })
	if d.Transport, err = c.Kafka.Transport(); err == nil {
		d.Dialer, err = c.Kafka.Dialer()
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Close closes the hot tier's client and ends the profiles, writing them.
func (d *Daemon) Close() {
	for i := len(d.close) - 1; i >= 0; i-- {
		d.close[i]()
	}
}

// Pair records the hot namespace's half-life, and its cold keyspace unless
// keyspace is empty, or checks them against those recorded. While the hot
// tier cannot be reached or refuses the client (a wrong password), it logs
// and tries again, so a long-lived process stays up and its /readyz says
// why; a namespace recorded with another half-life or keyspace is an error.
func (d *Daemon) Pair(ctx context.Context, keyspace string) error {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := d.Hot.PairHalfLife(ctx)
		if err == nil && keyspace != "" {
			err = d.Hot.Pair(ctx, keyspace)
		}
		if err == nil || errors.Is(err, hot.ErrHalfLife) || errors.Is(err, hot.ErrPairing) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		d.Log.Warn("hot namespace not recorded; retrying", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

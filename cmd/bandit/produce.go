package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/producers"
	"github.com/banditstream/banditstream/schemas"
)

// produceCommand reads interaction events as JSON lines and publishes
// them, batch by batch, each acknowledged by the brokers.
func produceCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, io.Reader, io.Writer, io.Writer) error {
	k := &conns.Kafka
	topic := fs.String("topic", config.TopicInteractions, "topic to publish to")
	file := fs.String("file", "-", "file of JSON lines, one event per line (- for stdin)")
	batch := fs.Int("batch", 500, "events per published batch")
	compression := fs.String("compression", "lz4", "batch compression: none, gzip, snappy, lz4, zstd")
	fill := fs.Bool("fill", true, "give an event without event_id a new random one, and without event_time_ms the current time")
	return func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
		if *batch < 1 {
			return errors.New("-batch must be at least 1")
		}
		in := stdin
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		transport, err := k.Transport()
		if err != nil {
			return err
		}
		p, err := producers.NewEventProducer(producers.Config{
			Brokers: k.Brokers, Compression: *compression, WriteTimeout: k.Timeout, Transport: transport,
		}, *topic)
		if err != nil {
			return err
		}
		defer p.Close()

		lim := schemas.DefaultLimits()
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), lim.MaxMessageBytes+1)
		var evs []*schemas.Interaction
		var lines []int
		published, rejected, line := 0, 0, 0
		flush := func() error {
			if len(evs) == 0 {
				return nil
			}
			err := p.PublishBatch(ctx, evs)
			var be *producers.BatchError
			switch {
			case err == nil:
				published += len(evs)
			case errors.As(err, &be):
				for i, e := range be.Errs {
					if e != nil {
						rejected++
						fmt.Fprintf(stderr, "line %d: %v\n", lines[i], e)
					} else {
						published++
					}
				}
			default:
				return err
			}
			evs, lines = evs[:0], lines[:0]
			return nil
		}
		for sc.Scan() {
			line++
			text := sc.Bytes()
			if len(bytes.TrimSpace(text)) == 0 {
				continue
			}
			ev := &schemas.Interaction{}
			if err := schemas.JSON.DecodeInteraction(lim, text, ev); err != nil {
				rejected++
				fmt.Fprintf(stderr, "line %d: %v\n", line, err)
				continue
			}
			if *fill {
				if ev.GetEventId() == "" {
					ev.EventId = producers.NewEventID()
				}
				if ev.GetEventTimeMs() == 0 {
					ev.EventTimeMs = time.Now().UnixMilli()
				}
			}
			evs = append(evs, ev)
			lines = append(lines, line)
			if len(evs) >= *batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("reading line %d: %w", line+1, err)
		}
		if err := flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "published %d events to %s; %d lines rejected\n", published, *topic, rejected)
		if rejected > 0 {
			return fmt.Errorf("%d lines rejected", rejected)
		}
		return nil
	}
}

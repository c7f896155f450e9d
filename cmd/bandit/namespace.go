package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/store/hot"
)

// diffCommand compares the arm counts of two hot tier namespaces: a shadow
// rebuild against the live state.
func diffCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, io.Reader, io.Writer, io.Writer) error {
	keys := hot.DefaultKeys()
	here := fs.String("key-prefix", keys.Prefix, "namespace to compare (the live one by default)")
	there := fs.String("against", "", "namespace to compare it with (required)")
	shards := fs.Int("shards", keys.Shards, "arm shards of both namespaces")
	return func(ctx context.Context, _ io.Reader, stdout, _ io.Writer) error {
		if *there == "" {
			return errors.New("-against: name the namespace to compare with")
		}
		a, b, closeAll, err := twoNamespaces(conns.Redis, *here, *there, *shards)
		if err != nil {
			return err
		}
		defer closeAll()
		d, err := a.Diff(ctx, b)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d arms; %s: %d arms; %d equal, %d differ, %d only in %s, %d only in %s\n",
			*here, d.HereArms, *there, d.ThereArms, d.Equal, d.Differ, d.OnlyHere, *here, d.OnlyThere, *there)
		for _, ex := range d.Examples {
			fmt.Fprintln(stdout, "  "+ex)
		}
		if !d.Same() {
			return fmt.Errorf("namespaces %s and %s differ", *here, *there)
		}
		return nil
	}
}

// promoteCommand replaces a namespace's arm counts with another's.
func promoteCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, io.Reader, io.Writer, io.Writer) error {
	keys := hot.DefaultKeys()
	from := fs.String("from", "", "namespace to promote, e.g. a checked shadow rebuild (required)")
	to := fs.String("to", keys.Prefix, "namespace it replaces (the live one by default); stop ingest into it first")
	shards := fs.Int("shards", keys.Shards, "arm shards of both namespaces")
	return func(ctx context.Context, _ io.Reader, stdout, _ io.Writer) error {
		if *from == "" || *from == *to {
			return errors.New("-from: name the namespace to promote, other than -to")
		}
		dst, src, closeAll, err := twoNamespaces(conns.Redis, *to, *from, *shards)
		if err != nil {
			return err
		}
		defer closeAll()
		if err := dst.Promote(ctx, src); err != nil {
			return err
		}
		d, err := dst.Diff(ctx, src)
		if err != nil {
			return err
		}
		if !d.Same() {
			return fmt.Errorf("after promotion %s and %s still differ: %v", *to, *from, d.Examples)
		}
		fmt.Fprintf(stdout, "promoted %s into %s: %d arms\n", *from, *to, d.Equal)
		return nil
	}
}

func twoNamespaces(r config.Redis, a, b string, shards int) (*hot.Hot, *hot.Hot, func(), error) {
	rdb, err := r.Client()
	if err != nil {
		return nil, nil, nil, err
	}
	ha, err := hot.New(rdb, hot.Keys{Prefix: a, Shards: shards})
	if err != nil {
		rdb.Close()
		return nil, nil, nil, err
	}
	hb, err := hot.New(rdb, hot.Keys{Prefix: b, Shards: shards})
	if err != nil {
		rdb.Close()
		return nil, nil, nil, err
	}
	return ha, hb, func() { rdb.Close() }, nil
}

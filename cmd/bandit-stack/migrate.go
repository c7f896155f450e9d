package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/store/cold"
)

type migrateOptions struct {
	conns       config.Connections
	replication string
}

func migrateFlags(o *migrateOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("bandit-stack migrate", flag.ContinueOnError)
	o.conns.Register(fs)
	fs.StringVar(&o.replication, "cql-replication", cold.DefaultReplication, "replication of the keyspace when it is created")
	return fs
}

// runMigrate applies the cold tier's schema: the keyspace and its tables,
// created if missing. Running it again changes nothing.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o migrateOptions
	fs := migrateFlags(&o)
	fs.SetOutput(stderr)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if err := o.conns.Validate(); err != nil {
		return err
	}
	cluster, err := o.conns.CQL.Cluster()
	if err != nil {
		return err
	}
	session, err := cluster.CreateSession()
	if err != nil {
		return fmt.Errorf("connecting to the cold tier: %w", err)
	}
	defer session.Close()
	if err := cold.Migrate(ctx, session, cold.Config{Keyspace: o.conns.CQL.Keyspace, Replication: o.replication}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cold tier schema applied in keyspace %s\n", o.conns.CQL.Keyspace)
	return nil
}

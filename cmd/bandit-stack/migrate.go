package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

// migrateCommand applies the cold tier's schema: the keyspace and its
// tables, created if missing. Running it again changes nothing.
func migrateCommand(_ *flag.FlagSet, conns *config.Connections) func(context.Context, []string, io.Writer) error {
	return func(ctx context.Context, _ []string, stdout io.Writer) error {
		cql := conns.CQL
		cql.Migrate = true
		session, _, err := cql.Cold(ctx, "", 0)
		if err != nil {
			return err
		}
		session.Close()
		fmt.Fprintf(stdout, "cold tier schema applied in keyspace %s\n", cql.Keyspace)
		return nil
	}
}

// Command bandit-stack checks that Kafka, the hot tier and the cold tier
// really serve, through the same client libraries as the pipeline, creates
// the pipeline's topics idempotently, and sets Kafka SCRAM users.
//
//	bandit-stack check [kafka|redis|cql|all]   exit 0 when serving
//	bandit-stack topics -topics interactions:6,score-requests:6,...
//	bandit-stack scram-user -scram-user NAME   (password from the environment)
//	bandit-stack migrate -cql-keyspace banditstream
//
// deploy/local/stack.sh uses it to wait for the local servers; in
// deploy/compose it runs once as the init service.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

const usage = `usage: bandit-stack <command> [flags]

commands:
  check [kafka|redis|cql|all]  check that each service serves (Kafka: produce and
                               fetch back a record; CQL: a query; Redis: PING and a
                               write); exit status 0 when all do
  topics                       create the pipeline's topics, growing partition
                               counts that are too small (never shrinking them)
  scram-user                   create or update a Kafka SASL/SCRAM user (password
                               from BANDITSTREAM_SCRAM_PASSWORD or a file)
  migrate                      create the cold tier's keyspace and tables if missing
                               (idempotent; daemons do it on start with -cql-migrate)

Every flag can also be set by its environment variable: -kafka-brokers is
BANDITSTREAM_KAFKA_BROKERS. Run "bandit-stack <command> -h" for the flags.
`

func main() {
	config.Main("bandit-stack", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdout, os.Stderr) })
}

// A command registers its flags on fs (the connection flags, in conns, are
// there already) and returns what it does once they are parsed; args are
// what follows the flags.
type command func(fs *flag.FlagSet, conns *config.Connections) func(ctx context.Context, args []string, stdout io.Writer) error

var commands = map[string]command{
	"check":      checkCommand,
	"topics":     topicsCommand,
	"scram-user": scramCommand,
	"migrate":    migrateCommand,
}

// commandFlags returns the flag set of the command called name, and what
// it does once parsed.
func commandFlags(name string, setup command) (*flag.FlagSet, *config.Connections, func(context.Context, []string, io.Writer) error) {
	fs := flag.NewFlagSet("bandit-stack "+name, flag.ContinueOnError)
	conns := &config.Connections{}
	conns.Register(fs)
	return fs, conns, setup(fs, conns)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	setup, ok := commands[args[0]]
	if !ok {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	fs, conns, do := commandFlags(args[0], setup)
	if help, err := config.ParseArgs(fs, args[1:], stderr, conns.Validate); help || err != nil {
		return err
	}
	return do(ctx, fs.Args(), stdout)
}

// checkCommand checks that each service serves.
func checkCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, []string, io.Writer) error {
	healthTopic := fs.String("health-topic", "banditstream.health", "topic the Kafka check produces to and fetches from")
	return func(ctx context.Context, args []string, stdout io.Writer) error {
		return check(ctx, *conns, *healthTopic, args, stdout)
	}
}

// topicsCommand creates the pipeline's topics.
func topicsCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, []string, io.Writer) error {
	spec := fs.String("topics", defaultTopicSpec, "topics to create, name:partitions, comma separated")
	rf := fs.Int("replication-factor", -1, "replication factor of new topics; -1 takes the broker's default")
	return func(ctx context.Context, _ []string, stdout io.Writer) error {
		topics, err := parseTopicSpec(*spec)
		if err != nil {
			return err
		}
		return ensureTopics(ctx, conns.Kafka, topics, *rf, stdout)
	}
}

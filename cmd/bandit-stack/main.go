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
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bandit-stack:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	switch args[0] {
	case "check":
		return runCheck(ctx, args[1:], stdout, stderr)
	case "topics":
		return runTopics(ctx, args[1:], stdout, stderr)
	case "scram-user":
		return runScramUser(ctx, args[1:], stdout, stderr)
	case "migrate":
		return runMigrate(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

type checkOptions struct {
	conns       config.Connections
	healthTopic string
}

func checkFlags(o *checkOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("bandit-stack check", flag.ContinueOnError)
	o.conns.Register(fs)
	fs.StringVar(&o.healthTopic, "health-topic", "banditstream.health", "topic the Kafka check produces to and fetches from")
	return fs
}

type topicsOptions struct {
	conns config.Connections
	spec  string
	rf    int
}

func topicsFlags(o *topicsOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("bandit-stack topics", flag.ContinueOnError)
	o.conns.Register(fs)
	fs.StringVar(&o.spec, "topics", defaultTopicSpec, "topics to create, name:partitions, comma separated")
	fs.IntVar(&o.rf, "replication-factor", -1, "replication factor of new topics; -1 takes the broker's default")
	return fs
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o checkOptions
	fs := checkFlags(&o)
	fs.SetOutput(stderr)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	conns := o.conns
	if err := conns.Validate(); err != nil {
		return err
	}
	which := "all"
	if fs.NArg() > 0 {
		which = fs.Arg(0)
	}
	if fs.NArg() > 1 {
		// Flags stop at the first argument: flags after the service
		// would be ignored silently.
		// (The arguments are not echoed: one may be a password.)
		return fmt.Errorf("%d unexpected arguments after %q: flags go before the service", fs.NArg()-1, which)
	}
	checks := map[string]func(context.Context) error{
		"kafka": func(ctx context.Context) error { return checkKafka(ctx, conns.Kafka, o.healthTopic) },
		"redis": func(ctx context.Context) error { return checkRedis(ctx, conns.Redis) },
		"cql":   func(ctx context.Context) error { return checkCQL(ctx, conns.CQL) },
	}
	order := []string{"kafka", "redis", "cql"}
	if which != "all" {
		if _, ok := checks[which]; !ok {
			return fmt.Errorf("unknown service %q (kafka, redis, cql or all)", which)
		}
		order = []string{which}
	}
	var errs []error
	for _, name := range order {
		if err := checks[name](ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		fmt.Fprintf(stdout, "%s: serving\n", name)
	}
	return errors.Join(errs...)
}

func runTopics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o topicsOptions
	fs := topicsFlags(&o)
	fs.SetOutput(stderr)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if err := o.conns.Validate(); err != nil {
		return err
	}
	topics, err := parseTopicSpec(o.spec)
	if err != nil {
		return err
	}
	return ensureTopics(ctx, o.conns.Kafka, topics, o.rf, stdout)
}

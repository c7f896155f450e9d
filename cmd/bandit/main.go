// Command bandit is the pipeline's command-line tool for people:
//
//	bandit produce   publish interaction events from JSON lines
//	bandit score     send a score request and print the ranking
//	bandit tail      print a topic's records in readable form
//	bandit redrive   send dead letters back to their topic, once each
//	bandit replay    re-read a topic range into the stores or a results topic
//	bandit diff      compare two hot tier namespaces
//	bandit promote   make a checked shadow namespace the live one
//
// `bandit <command> -help` lists a command's flags. Every flag can also be
// set by its environment variable: -kafka-brokers is
// BANDITSTREAM_KAFKA_BROKERS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

// command is one subcommand: the connection flags it needs are registered
// on fs (and checked once parsed), its own flags by setup, which returns
// what it does once they are parsed.
type command struct {
	summary string
	needs   services
	setup   func(fs *flag.FlagSet, conns *config.Connections) func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error
}

// services are the systems a command connects to.
type services int

const (
	kafkaOnly services = iota
	redisOnly
	allServices
)

// register defines the connection flags of s on fs and returns their check.
func (s services) register(fs *flag.FlagSet, conns *config.Connections) func() error {
	switch s {
	case kafkaOnly:
		conns.Kafka.Register(fs)
		return conns.Kafka.Validate
	case redisOnly:
		conns.Redis.Register(fs)
		return conns.Redis.Validate
	default:
		conns.Register(fs)
		return conns.Validate
	}
}

var commands = map[string]command{
	"produce":  {"publish interaction events from JSON lines (stdin or -file)", kafkaOnly, produceCommand},
	"score":    {"send a score request and print the ranking", kafkaOnly, scoreCommand},
	"tail":     {"print a topic's records (events, requests, results, dead letters) as JSON lines", kafkaOnly, tailCommand},
	"redrive":  {"send dead letters back to the topic they came from, each once", kafkaOnly, redriveCommand},
	"replay":   {"re-read a topic range into the stores (live or a shadow namespace) or, for requests, into a results topic", allServices, replayCommand},
	"diff":     {"compare the arm counts of two hot tier namespaces", redisOnly, diffCommand},
	"evaluate": {"estimate from the decision log what other policies would have earned (IPS, SNIPS, DR)", kafkaOnly, evaluateCommand},
	"promote":  {"replace a namespace's arm counts with another's (a checked shadow rebuild)", redisOnly, promoteCommand},
}

func main() {
	config.Main("bandit", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr) })
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: bandit <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\n`bandit <command> -help` lists a command's flags; each flag is also read from\nBANDITSTREAM_<FLAG> (-kafka-brokers: BANDITSTREAM_KAFKA_BROKERS).")
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return config.ErrUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "bandit: unknown command %q\n\n", args[0])
		usage(stderr)
		return config.ErrUsage
	}
	fs := flag.NewFlagSet("bandit "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var conns config.Connections
	validate := cmd.needs.register(fs, &conns)
	do := cmd.setup(fs, &conns)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bandit %s [flags]\n\n%s.\n\nflags:\n", args[0], cmd.summary)
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args[1:], nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return config.ErrUsage
	}
	if fs.NArg() > 0 {
		// Flags stop at the first argument; the rest are not echoed (one
		// may be a password).
		fmt.Fprintf(stderr, "bandit %s: %d unexpected arguments starting at the first that is not a flag: flags go before, none after\n", args[0], fs.NArg())
		return config.ErrUsage
	}
	if err := validate(); err != nil {
		return err
	}
	return do(ctx, stdin, stdout, stderr)
}

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
	"os/signal"
	"sort"
	"syscall"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

// command is one subcommand: its flags are registered on fs, and run does
// the work once they are parsed.
type command struct {
	summary string
	setup   func(fs *flag.FlagSet) func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"produce": {"publish interaction events from JSON lines (stdin or -file)", produceCommand},
	"score":   {"send a score request and print the ranking", scoreCommand},
	"tail":    {"print a topic's records (events, requests, results, dead letters) as JSON lines", tailCommand},
	"redrive": {"send dead letters back to the topic they came from, each once", redriveCommand},
	"replay":  {"re-read a topic range into the stores (live or a shadow namespace) or, for requests, into a results topic", replayCommand},
	"diff":    {"compare the arm counts of two hot tier namespaces", diffCommand},
	"promote": {"replace a namespace's arm counts with another's (a checked shadow rebuild)", promoteCommand},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "bandit:", err)
		}
		stop()
		os.Exit(1)
	}
}

// errUsage is returned after the usage was printed.
var errUsage = errors.New("usage")

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
		return errUsage
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
		return errUsage
	}
	fs := flag.NewFlagSet("bandit "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	do := cmd.setup(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bandit %s [flags]\n\n%s.\n\nflags:\n", args[0], cmd.summary)
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args[1:], nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		// Flags stop at the first argument; the rest are not echoed (one
		// may be a password).
		fmt.Fprintf(stderr, "bandit %s: %d unexpected arguments starting at the first that is not a flag: flags go before, none after\n", args[0], fs.NArg())
		return errUsage
	}
	return do(ctx, stdin, stdout, stderr)
}

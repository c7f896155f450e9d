// Command bandit-sim closes the loop of the pipeline with simulated users.
//
// A synthetic catalogue (-items items in each of -contexts) has hidden click
// rates. Simulated users, in sessions that start, go idle and come back,
// send score requests for every item through the real pipeline (to
// bandit-score, replies on their own topic), look at the top -k, and
// impress, click and order according to the hidden rates; those events go to
// the interactions topic, where bandit-ingest counts them, and the next
// rankings learn from them. A status line shows requests/s, events/s, the
// click-through rate so far, cumulative regret against the best possible
// ranking (and a uniform-random ranking's, on the same requests), hot users,
// offloads and reloads, and dead letters. At the end it prints a summary and
// writes a PNG of click-through rate and regret over time.
//
// Every flag can also be set by its environment variable: -kafka-brokers is
// BANDITSTREAM_KAFKA_BROKERS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/cmd/internal/evaluation"
	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/producers"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/hot"
)

type options struct {
	conns           config.Connections
	requestsTopic   string
	eventsTopic     string
	replyTopic      string
	dlqTopics       string
	keyPrefix       string
	duration        time.Duration
	rate            float64
	users           int
	sessionRequests int
	idle            time.Duration
	items           int
	contexts        string
	k               int
	badEvery        int
	seed            uint64
	out             string
	live            bool
	scenario        string
	newEvery        time.Duration
	newFirst        int
	levels          string
	label           string
	compare         string
	decisions       string
	policies        evaluation.Policies
}

func newFlags(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("bandit-sim", flag.ContinueOnError)
	o.conns.Register(fs)
	fs.StringVar(&o.requestsTopic, "requests-topic", config.TopicScoreRequests, "topic bandit-score reads")
	fs.StringVar(&o.eventsTopic, "events-topic", config.TopicInteractions, "topic bandit-ingest reads")
	fs.StringVar(&o.replyTopic, "reply-topic", consumers.ReplyTopicPrefix+"sim", "reply topic of the simulated users' requests (created if missing)")
	fs.StringVar(&o.dlqTopics, "dlq-topics", config.TopicInteractions+config.DLQSuffix+","+config.TopicScoreRequests+config.DLQSuffix, "dead-letter topics to count, comma separated")
	fs.StringVar(&o.keyPrefix, "key-prefix", hot.DefaultKeys().Prefix, "hot tier key prefix of the pipeline (to count hot users)")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "how long users send requests")
	fs.Float64Var(&o.rate, "rate", 50, "score requests per second")
	fs.IntVar(&o.users, "users", 100, "simulated users")
	fs.IntVar(&o.sessionRequests, "session-requests", 8, "mean requests per session")
	fs.DurationVar(&o.idle, "idle", 8*time.Second, "pause between a user's sessions (longer than bandit-ingest's -idle-timeout shows offloads and reloads)")
	fs.IntVar(&o.items, "items", 40, "items in the catalogue (every request ranks them all)")
	fs.StringVar(&o.contexts, "contexts", "home,search", "contexts (placements), comma separated")
	fs.IntVar(&o.k, "k", 5, "items shown per request")
	fs.IntVar(&o.badEvery, "bad-every", 500, "every n-th event is sent malformed, to show the dead-letter topic at work (0: none)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the catalogue's hidden rates and of the users")
	fs.StringVar(&o.out, "out", ".local/demo", "folder for the picture (demo.png) and the summary (summary.txt)")
	fs.BoolVar(&o.live, "live", true, "show the status line")
	fs.StringVar(&o.scenario, "scenario", scenarioSteady, "how the catalogue changes during the run: steady; drift (half-way through, each context's best item falls among the worst and an item of the middle becomes the best); new-items (an item joins every -new-item-every)")
	fs.DurationVar(&o.newEvery, "new-item-every", 3*time.Second, "with -scenario new-items: how often an item joins the catalogue")
	fs.IntVar(&o.newFirst, "new-item-impressions", 50, "impressions of a new item (per context) whose regret the summary reports")
	fs.StringVar(&o.levels, "context-levels", "", "factors scaling each context's click rates, comma separated in -contexts' order (e.g. 1,4: the second context's items do four times as well); empty: all 1")
	fs.StringVar(&o.label, "label", "", "name of this run in comparisons (default: the scenario)")
	fs.StringVar(&o.decisions, "decisions-topic", "", "the scorer's decision log (bandit-score -decisions-topic): at the end, each -policy's true value on the run's decisions is computed from the hidden rates, what bandit evaluate estimates")
	fs.Var(&o.policies, "policy", "with -decisions-topic, a policy whose true value to compute, as bandit evaluate takes it (repeat; default logged, mean, uniform)")
	fs.StringVar(&o.compare, "compare", "", "earlier runs to compare with in the picture and the summary, comma separated label=folder (their -out, holding series.json)")
	return fs
}

func main() {
	config.Main("bandit-sim", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdout, os.Stderr) })
}

func (o *options) validate() error {
	var errs []error
	if o.duration <= 0 || o.rate <= 0 || o.users < 1 || o.sessionRequests < 1 || o.idle < 0 {
		errs = append(errs, errors.New("-duration, -rate, -users and -session-requests must be positive"))
	}
	if o.items < 1 || o.k < 1 || o.k > o.items {
		errs = append(errs, fmt.Errorf("-k (%d) must be between 1 and -items (%d)", o.k, o.items))
	}
	if o.badEvery < 0 {
		errs = append(errs, errors.New("-bad-every must not be negative"))
	}
	if o.scenario != scenarioSteady && o.scenario != scenarioDrift && o.scenario != scenarioNewItems {
		errs = append(errs, fmt.Errorf("-scenario %q is not steady, drift or new-items", o.scenario))
	}
	if o.newEvery <= 0 || o.newFirst < 1 {
		errs = append(errs, errors.New("-new-item-every and -new-item-impressions must be positive"))
	}
	if _, err := parseLevels(o.levels); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseCompare(o.compare); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// result is what a run produced.
type result struct {
	world    *world
	observer observer
	series   []point
	summary  string
	png      string
	// truths are each -policy's true value per decision (top slot) on
	// the run's decisions, with -decisions-topic.
	truths []truth
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := newFlags(&o)
	if help, err := config.ParseArgs(fs, args, stderr, o.conns.Validate); help || err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	live := io.Writer(nil)
	if o.live {
		live = stdout
	}
	res, err := simulate(ctx, &o, live)
	if live != nil {
		fmt.Fprintln(stdout)
	}
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, res.summary)
	return nil
}

// simulate runs the simulation against the pipeline and writes the
// picture and the summary.
func simulate(ctx context.Context, o *options, live io.Writer) (_ *result, err error) {
	brokers := o.conns.Kafka.Brokers
	client, err := o.conns.Kafka.Client()
	if err != nil {
		return nil, err
	}
	dialer, err := o.conns.Kafka.Dialer()
	if err != nil {
		return nil, err
	}
	if err := ensureTopic(ctx, client, o.replyTopic); err != nil {
		return nil, err
	}
	rdb, err := o.conns.Redis.Client()
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	keys := hot.DefaultKeys()
	keys.Prefix = o.keyPrefix
	obs := &pipelineObserver{rdb: rdb, keys: keys, client: client, dlq: config.SplitList(o.dlqTopics)}
	if err := obs.start(ctx); err != nil {
		return nil, err
	}

	replies := make(chan *schemas.ScoreResponse, 1024)
	rctx, stopReading := context.WithCancel(ctx)
	readErr := make(chan error, 1)
	go func() { readErr <- readReplies(rctx, brokers, dialer, o.replyTopic, replies) }()
	defer func() {
		stopReading()
		// The reader retries transient errors itself and ends with ctx.
		if rerr := <-readErr; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
			err = fmt.Errorf("reading replies: %w", rerr)
		}
	}()

	out := producers.NewSyncWriter(producers.WriterConfig{Brokers: brokers,
		BatchTimeout: 2 * time.Millisecond, WriteTimeout: o.conns.Kafka.Timeout, Transport: client.Transport})
	defer out.Close()

	levels, _ := parseLevels(o.levels) // validated
	others, _ := parseCompare(o.compare)
	var compared []savedRun
	for _, c := range others {
		r, err := loadRun(c.dir)
		if err != nil {
			return nil, err
		}
		r.Label = c.label
		compared = append(compared, r)
	}
	w := newWorld(o.seed, config.SplitList(o.contexts), o.items, o.k, levels...)
	s := newSim(simConfig{
		rate: o.rate, duration: o.duration, users: o.users, sessionRequests: o.sessionRequests, idle: o.idle,
		badEvery: o.badEvery, seed: o.seed, runID: time.Now().UnixMilli(),
		requestsTopic: o.requestsTopic, eventsTopic: o.eventsTopic, replyTopic: o.replyTopic, live: live,
		scenario: o.scenario, newEvery: o.newEvery, newFirst: o.newFirst,
	}, w, out, out, replies, obs)
	series, err := s.run(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	label := o.label
	if label == "" {
		label = o.scenario
	}
	this := newSavedRun(label, o, w, series)
	if err := this.save(o.out); err != nil {
		return nil, err
	}
	res := &result{world: w, observer: obs, series: series, png: filepath.Join(o.out, "demo.png")}
	if err := plotRun(res.png, w, series, append(compared, this)); err != nil {
		return nil, fmt.Errorf("drawing %s: %w", res.png, err)
	}
	res.summary = summarize(w, series, res.png) + compareSummary(o, append(compared, this))
	if o.decisions != "" {
		if res.truths, err = policyTruths(ctx, o, client, dialer, w); err != nil {
			return nil, err
		}
		res.summary += truthSummary(res.truths)
	}
	if err := os.WriteFile(filepath.Join(o.out, "summary.txt"), []byte(res.summary), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

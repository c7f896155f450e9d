package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/producers"
	"github.com/banditstream/banditstream/schemas"
)

// scoreCommand sends one score request through the pipeline and prints the
// ranking it gets back.
func scoreCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, io.Reader, io.Writer, io.Writer) error {
	k := &conns.Kafka
	topic := fs.String("requests-topic", config.TopicScoreRequests, "topic bandit-score reads")
	reply := fs.String("reply-topic", "", "topic for the response (default: a temporary one, deleted afterwards)")
	user := fs.String("user", "", "user id (required)")
	ctxName := fs.String("context", "", "context (placement)")
	candidates := fs.String("candidates", "", "candidate item ids, comma separated")
	candidatesFile := fs.String("candidates-file", "", "file of candidate item ids, one per line (- for stdin)")
	k2 := fs.Int("k", 10, "how many ranked items to return")
	mode := fs.String("mode", "thompson", "thompson or mean")
	seed := fs.String("seed", "", "seed of the Thompson draws (same stats and seed, same ranking); default random")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the response")
	asJSON := fs.Bool("json", false, "print the response as JSON")
	explain := fs.Bool("explain", false, "ask for each item's posterior and where it came from (cache, hot tier, prior; the user's own part)")
	propensities := fs.Bool("propensities", false, "ask for each item's propensities: the probability the policy ranks it in its slot and in the top k")
	return func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
		m, ok := schemas.ParseMode(*mode)
		if !ok {
			return fmt.Errorf("-mode: %q is not thompson or mean", *mode)
		}
		req := &schemas.ScoreRequest{UserId: *user, Context: *ctxName, K: int32(*k2), Mode: m, Explain: *explain, Propensities: *propensities}
		if *seed != "" {
			v, err := strconv.ParseUint(*seed, 10, 64)
			if err != nil {
				return fmt.Errorf("-seed: %w", err)
			}
			req.Seed = &v
		}
		for _, c := range strings.Split(*candidates, ",") {
			if c = strings.TrimSpace(c); c != "" {
				req.Candidates = append(req.Candidates, c)
			}
		}
		if *candidatesFile != "" {
			in := stdin
			if *candidatesFile != "-" {
				f, err := os.Open(*candidatesFile)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			sc := bufio.NewScanner(in)
			for sc.Scan() {
				if c := strings.TrimSpace(sc.Text()); c != "" {
					req.Candidates = append(req.Candidates, c)
				}
			}
			if err := sc.Err(); err != nil {
				return err
			}
		}
		if len(req.Candidates) == 0 {
			return errors.New("no candidates: give -candidates or -candidates-file")
		}
		transport, err := k.Transport()
		if err != nil {
			return err
		}
		dialer, err := k.Dialer()
		if err != nil {
			return err
		}
		c, err := producers.NewRankClient(ctx, producers.RankConfig{
			Config: producers.Config{Brokers: k.Brokers, WriteTimeout: k.Timeout, BatchTimeout: time.Millisecond,
				Transport: transport, Dialer: dialer},
			RequestsTopic: *topic, ReplyTopic: *reply, Timeout: *timeout,
		})
		if err != nil {
			return err
		}
		defer c.Close()
		start := time.Now()
		resp, err := c.Rank(ctx, req)
		if err != nil {
			return err
		}
		rtt := time.Since(start)
		if *asJSON {
			b, err := schemas.JSON.AppendScoreResponse(nil, resp)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		seedText := "none"
		if resp.Seed != nil {
			seedText = strconv.FormatUint(resp.GetSeed(), 10)
		}
		fmt.Fprintf(stdout, "request %s: top %d of %d for user %s in context %q (%s, seed %s, model %s)\n",
			resp.GetRequestId(), len(resp.GetItems()), len(req.Candidates), resp.GetUserId(), resp.GetContext(),
			schemas.ModeName(resp.GetMode()), seedText, resp.GetModelVersion())
		for i, it := range resp.GetItems() {
			fmt.Fprintf(stdout, "%4d  %-24s score %.4f  mean %.4f", i+1, it.GetItemId(), it.GetScore(), it.GetMean())
			if req.GetPropensities() {
				fmt.Fprintf(stdout, "  propensity %.4f (top %d: %.4f)", it.GetPropensity(), len(resp.GetItems()), it.GetTopkPropensity())
			}
			if e := it.GetExplanation(); e != nil {
				fmt.Fprintf(stdout, "  Beta(%.6g, %.6g) from %s", e.GetAlpha(), e.GetBeta(), schemas.SourceName(e.GetSource()))
				if e.GetUserAlpha() != 0 || e.GetUserBeta() != 0 {
					fmt.Fprintf(stdout, ", the user's own counts adding %.6g, %.6g", e.GetUserAlpha(), e.GetUserBeta())
				}
			}
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "scored in %d µs; round trip %s\n", resp.GetTiming().GetScoringMicros(), rtt.Round(time.Millisecond))
		return nil
	}
}

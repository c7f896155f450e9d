package ops_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
)

func get(addr, path string) (int, string, error) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitFor polls path until it answers code, or fails after timeout.
func waitFor(t *testing.T, addr, path string, code int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, body, err := get(addr, path)
		if err == nil && c == code {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%s: %d %q %v after %s, want %d", addr, path, c, body, err, timeout, code)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metrics scrapes addr and returns the samples by name, each keyed by its
// labels ("outcome=applied", "" for none); a histogram gives its count.
func metrics(t *testing.T, addr string) map[string]map[string]float64 {
	t.Helper()
	code, body, err := get(addr, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for name, f := range families {
		out[name] = map[string]float64{}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := strings.Join(labels, ",")
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[name][key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name][key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name][key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

type daemons struct {
	brokers          []string
	redis, cql       string
	events, requests string
	args             []string
}

func newDaemons(t *testing.T) *daemons {
	d := &daemons{brokers: stacktest.KafkaBrokers(t), redis: stacktest.RedisAddr(t), cql: stacktest.CQLHosts(t)[0]}
	d.events = stacktest.CreateTopic(t, d.brokers, "it_ops_events", 2)
	stacktest.CreateTopicNamed(t, d.brokers, d.events+".dlq", 1)
	d.requests = stacktest.CreateTopic(t, d.brokers, "it_ops_requests", 2)
	stacktest.CreateTopicNamed(t, d.brokers, d.requests+".dlq", 1)
	d.args = []string{"-kafka-brokers", d.brokers[0], "-redis-addr", d.redis, "-cql-hosts", d.cql,
		"-cql-keyspace", stacktest.UniqueName("it"), "-cql-migrate", "-key-prefix", stacktest.UniqueName("it"), "-shards", "8",
		"-session-timeout", "6s", "-fetch-max-wait", "50ms", "-log-level", "warn"}
	return d
}

// After a short run, the daemons' /metrics expose every series an
// operator needs, with the values the run implies; /healthz and /readyz
// answer 200.
func TestOpsEndpointsExposeTheMetrics(t *testing.T) {
	d := newDaemons(t)
	results := stacktest.CreateTopic(t, d.brokers, "it_ops_results", 1)
	ingestAddr, scoreAddr := stacktest.FreeAddr(t), stacktest.FreeAddr(t)
	ingestGroup, scoreGroup := stacktest.UniqueName("it_ops_ingest"), stacktest.UniqueName("it_ops_score")
	stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-ingest"), nil, append(d.args, "-topic", d.events, "-group", ingestGroup,
		"-ops-addr", ingestAddr, "-idle-timeout", "1s", "-sweep-interval", "300ms")...)
	stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-score"), nil, append(d.args, "-topic", d.requests, "-results-topic", results,
		"-group", scoreGroup, "-ops-addr", scoreAddr)...)
	for _, a := range []string{ingestAddr, scoreAddr} {
		waitFor(t, a, "/healthz", 200, time.Minute)
		waitFor(t, a, "/readyz", 200, time.Minute)
	}

	ctx := context.Background()
	now := time.Now().UnixMilli()
	var events []kafka.Message
	for i := 0; i < 300; i++ {
		ev := &schemas.Interaction{EventId: "o" + strconv.Itoa(i), UserId: "u" + strconv.Itoa(i%20), ItemId: "sku-" + strconv.Itoa(i%10),
			Context: "home", Type: schemas.Impression, EventTimeMs: now}
		v, _ := schemas.Protobuf.AppendInteraction(nil, ev)
		events = append(events, kafka.Message{Key: []byte(ev.UserId), Value: v})
	}
	for i := 0; i < 3; i++ {
		events = append(events, kafka.Message{Key: []byte("bad"), Value: []byte{0xff, 0x01}})
	}
	var requests []kafka.Message
	for i := 0; i < 51; i++ {
		r := &schemas.ScoreRequest{RequestId: "q" + strconv.Itoa(i), UserId: "u" + strconv.Itoa(i%20), Context: "home",
			Candidates: []string{"sku-1", "sku-2", "sku-3", "new-" + strconv.Itoa(i)}, K: 2, SentTimeMs: time.Now().UnixMilli()}
		if i == 50 {
			r.DeadlineMs = now - 1000
		}
		v, _ := schemas.Protobuf.AppendScoreRequest(nil, r)
		requests = append(requests, kafka.Message{Key: []byte(r.UserId), Value: v})
	}
	// Events first, counted before the requests come: the requests' known
	// items are then read from the hot tier with counts.
	for _, step := range []struct {
		topic, group string
		msgs         []kafka.Message
	}{{d.events, ingestGroup, events}, {d.requests, scoreGroup, requests}} {
		w := &kafka.Writer{Addr: kafka.TCP(d.brokers...), Topic: step.topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
		if err := w.WriteMessages(ctx, step.msgs...); err != nil {
			t.Fatal(err)
		}
		w.Close()
		stacktest.WaitForLag(t, d.brokers, step.group, step.topic, time.Minute)
	}

	// Sessions go idle after 1 s: every session loaded (by ingest for
	// events, by the scorer for requests, once per user unless offloaded
	// in between) is offloaded by the sweeper.
	var in, sc map[string]map[string]float64
	loads := func() float64 {
		return in["banditstream_session_loads_total"][""] + sc["banditstream_session_loads_total"][""]
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		in, sc = metrics(t, ingestAddr), metrics(t, scoreAddr)
		if (loads() >= 20 && in["banditstream_session_offloads_total"][""] == loads()) || time.Now().After(deadline) {
			break
		}
	}
	if offloads := in["banditstream_session_offloads_total"][""]; loads() < 20 || offloads != loads() {
		t.Errorf("%v session loads (ingest and scorer), %v offloads: want at least 20 loads, each offloaded", loads(), offloads)
	}
	check := func(m map[string]map[string]float64, name, labels string, ok func(float64) bool, want string) {
		t.Helper()
		v, found := m[name][labels]
		if !found || !ok(v) {
			t.Errorf("%s{%s} = %v (present %v), want %s", name, labels, v, found, want)
		}
	}
	eq := func(x float64) func(float64) bool { return func(v float64) bool { return v == x } }
	pos := func(v float64) bool { return v > 0 }
	check(in, "banditstream_events_total", "outcome=applied", eq(300), "300")
	check(in, "banditstream_events_total", "outcome=duplicate", eq(0), "0")
	check(in, "banditstream_events_total", "outcome=dead_letter", eq(3), "3")
	check(in, "banditstream_batch_records", "component=ingest", pos, "> 0 batches")
	check(in, "banditstream_batch_seconds", "component=ingest", pos, "> 0 batches")
	for p := 0; p < 2; p++ {
		check(in, "banditstream_consumer_lag", "partition="+strconv.Itoa(p)+",topic="+d.events, eq(0), "0")
		check(sc, "banditstream_consumer_lag", "partition="+strconv.Itoa(p)+",topic="+d.requests, eq(0), "0")
	}
	check(sc, "banditstream_requests_total", "outcome=scored", eq(50), "50")
	check(sc, "banditstream_requests_total", "outcome=past_deadline", eq(1), "1")
	check(sc, "banditstream_requests_total", "outcome=dead_letter", eq(0), "0")
	check(sc, "banditstream_candidates_total", "", eq(200), "200")
	check(sc, "banditstream_request_seconds", "", eq(50), "50 observations")
	check(sc, "banditstream_batch_records", "component=score", pos, "> 0 batches")
	check(sc, "banditstream_arm_lookups_total", "tier=prior", func(v float64) bool { return v >= 50 }, "≥ 50 (the new items)")
	check(sc, "banditstream_arm_lookups_total", "tier=hot", func(v float64) bool { return v >= 3 }, "≥ 3 (sku-1…3)")
	lookups := sc["banditstream_arm_lookups_total"]
	if total := lookups["tier=cache"] + lookups["tier=hot"] + lookups["tier=prior"]; total != 200 {
		t.Errorf("arm lookups add up to %v, want the 200 candidates", total)
	}
	check(sc, "banditstream_arm_cache_arms", "", pos, "> 0")
	check(sc, "process_resident_memory_bytes", "", pos, "> 0")
	if t.Failed() {
		_, body, _ := get(scoreAddr, "/metrics")
		t.Logf("score metrics:\n%.3000s", body)
	}
	checkDashboard(t, in, sc)
}

// checkDashboard checks that every metric the Grafana dashboard queries is
// one the daemons export.
func checkDashboard(t *testing.T, exported ...map[string]map[string]float64) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "grafana", "banditstream.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`banditstream_[a-z_]+`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				n++
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suffix)
				}
				found := false
				for _, e := range exported {
					if _, ok := e[base]; ok {
						found = true
					}
				}
				if !found {
					t.Errorf("dashboard panel %q queries %s, which no daemon exports", p.Title, m)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("the dashboard queries %d metrics: the check tests little", n)
	}
}

// /readyz turns 503, naming Redis, while Redis is down, and 200 again once
// it is back.
func TestFaultReadyzFollowsRedis(t *testing.T) {
	stacktest.NeedFaults(t)
	d := newDaemons(t)
	addr := stacktest.FreeAddr(t)
	stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-score"), nil, append(d.args, "-topic", d.requests,
		"-group", stacktest.UniqueName("it_ready"), "-ops-addr", addr, "-sessions=false")...)
	waitFor(t, addr, "/readyz", 200, 30*time.Second)
	stacktest.Stack(t, "stop", "redis")
	restarted := false
	defer func() {
		if !restarted {
			stacktest.Stack(t, "start", "redis")
		}
	}()
	body := waitFor(t, addr, "/readyz", 503, 15*time.Second)
	if !strings.Contains(body, "redis:") || strings.Contains(body, "kafka:") {
		t.Fatalf("/readyz while Redis is down: %q", body)
	}
	if code, _, err := get(addr, "/healthz"); err != nil || code != 200 {
		t.Fatalf("/healthz while Redis is down: %d %v (the process is alive)", code, err)
	}
	stacktest.Stack(t, "start", "redis")
	restarted = true
	waitFor(t, addr, "/readyz", 200, 30*time.Second)
}

// SIGTERM under load: bandit-ingest drains its batches, commits and exits
// within 30 s; the next start redoes no committed work: it reads on from
// the commit, so it meets no event twice (no duplicates), and every event
// is counted.
func TestSIGTERMUnderLoadRedoesNothing(t *testing.T) {
	d := newDaemons(t)
	group := stacktest.UniqueName("it_term")
	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	args := append(d.args, "-mode", "ingest", "-topic", d.events, "-group", group, "-fetch-max-bytes", "65536")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const total = 60_000
	sent := make(chan error, 1)
	go func() {
		w := &kafka.Writer{Addr: kafka.TCP(d.brokers...), Topic: d.events, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{},
			BatchTimeout: time.Millisecond, BatchSize: 2000}
		defer w.Close()
		now := time.Now().UnixMilli()
		for i := 0; i < total; i += 2000 {
			var msgs []kafka.Message
			for j := i; j < i+2000; j++ {
				ev := &schemas.Interaction{EventId: "t" + strconv.Itoa(j), UserId: "u" + strconv.Itoa(j%500), ItemId: "sku-" + strconv.Itoa(j%50),
					Context: "home", Type: schemas.Impression, EventTimeMs: now}
				v, _ := schemas.Protobuf.AppendInteraction(nil, ev)
				msgs = append(msgs, kafka.Message{Key: []byte(ev.UserId), Value: v})
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	addr := stacktest.FreeAddr(t)
	p := stacktest.StartProcess(t, bin, nil, append(args, "-ops-addr", addr)...)
	waitFor(t, addr, "/healthz", 200, 30*time.Second)
	// Stop it mid-stream, with batches in flight.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if m := metrics(t, addr); m["banditstream_events_total"]["outcome=applied"] > total/10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ingest applied too little in a minute")
		}
	}
	before := metrics(t, addr)["banditstream_events_total"]["outcome=applied"]
	took, clean := p.Stop(30 * time.Second)
	if !clean || p.ExitCode() != 0 {
		t.Fatalf("SIGTERM: exited clean %v with code %d after %s, want 0 within 30 s", clean, p.ExitCode(), took)
	}
	t.Logf("SIGTERM after %.0f events applied: exit in %s", before, took)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	addr2 := stacktest.FreeAddr(t)
	stacktest.StartProcess(t, bin, nil, append(args, "-ops-addr", addr2)...)
	stacktest.WaitForLag(t, d.brokers, group, d.events, 2*time.Minute)
	m := metrics(t, addr2)["banditstream_events_total"]
	if m["outcome=duplicate"] != 0 {
		t.Fatalf("the restart met %v events the first run had committed", m["outcome=duplicate"])
	}
	if first := total - m["outcome=applied"]; first < before {
		t.Fatalf("the first run committed %v events, fewer than the %v it applied before SIGTERM", first, before)
	}
}

// An authenticated hot tier: bandit-score with the password from a file is
// ready and scores; with a wrong password, /readyz says so without the
// password, and neither its logs nor bandit-stack's error show it.
func TestAuthenticatedRedis(t *testing.T) {
	d := newDaemons(t)
	const password, wrong = "s3cret-hot-tier-password", "wrong-password-123"
	redisAddr := stacktest.StartRedis(t, password)
	pwFile := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	results := stacktest.CreateTopic(t, d.brokers, "it_auth_results", 1)
	bin := stacktest.BuildBinary(t, "./cmd/bandit-score")
	args := func(extra ...string) []string {
		a := append([]string{}, d.args...)
		for i := range a {
			if a[i] == d.redis {
				a[i] = redisAddr
			}
		}
		return append(append(a, "-topic", d.requests, "-results-topic", results, "-sessions=false"), extra...)
	}

	good, group := stacktest.FreeAddr(t), stacktest.UniqueName("it_auth")
	stacktest.StartProcess(t, bin, nil, args("-group", group, "-ops-addr", good, "-redis-password-file", pwFile)...)
	waitFor(t, good, "/readyz", 200, time.Minute)
	v, _ := schemas.Protobuf.AppendScoreRequest(nil, &schemas.ScoreRequest{RequestId: "a1", UserId: "u", Candidates: []string{"x", "y"}, K: 1})
	w := &kafka.Writer{Addr: kafka.TCP(d.brokers...), Topic: d.requests, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("u"), Value: v}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	stacktest.WaitForLag(t, d.brokers, group, d.requests, time.Minute)
	if n := metrics(t, good)["banditstream_requests_total"]["outcome=scored"]; n != 1 {
		t.Fatalf("scored %v requests with the authenticated hot tier, want 1", n)
	}

	bad := stacktest.FreeAddr(t)
	p := stacktest.StartProcess(t, bin, nil, args("-group", stacktest.UniqueName("it_auth"), "-ops-addr", bad, "-redis-password", wrong, "-log-level", "debug")...)
	body := waitFor(t, bad, "/readyz", 503, time.Minute)
	if !strings.Contains(body, "redis:") || !strings.Contains(body, "WRONGPASS") || strings.Contains(body, wrong) {
		t.Fatalf("/readyz with a wrong password: %q", body)
	}
	p.Stop(30 * time.Second)
	if out := p.Output(); strings.Contains(out, wrong) || !strings.Contains(out, "REDACTED") {
		t.Fatalf("bandit-score's log shows the password or no redaction:\n%s", out)
	}
	stack := stacktest.BuildBinary(t, "./cmd/bandit-stack")
	out, err := exec.Command(stack, "check", "-redis-addr", redisAddr, "-redis-password", wrong, "redis").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "WRONGPASS") || strings.Contains(string(out), wrong) {
		t.Fatalf("bandit-stack check redis with a wrong password: %v\n%s", err, out)
	}
}

// An authenticated cold tier (the local Cassandra runs
// PasswordAuthenticator): bandit-ingest given the credentials by flags,
// the password from a file, is ready; given a wrong password it exits with
// an error that says so without the password, in its output or its log.
func TestAuthenticatedCassandra(t *testing.T) {
	d := newDaemons(t)
	user, password := stacktest.CQLCredentials()
	pwFile := filepath.Join(t.TempDir(), "cql-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	addr := stacktest.FreeAddr(t)
	// The environment's credentials are cleared: only the flags log in.
	noEnv := []string{stacktest.EnvCQLUsername + "=", stacktest.EnvCQLPassword + "="}
	stacktest.StartProcess(t, bin, noEnv, append(d.args, "-topic", d.events, "-group", stacktest.UniqueName("it_cqlauth"),
		"-ops-addr", addr, "-cql-username", user, "-cql-password-file", pwFile)...)
	waitFor(t, addr, "/readyz", 200, time.Minute)

	const wrong = "wrong-cql-password-77"
	p := stacktest.StartProcess(t, bin, noEnv, append(d.args, "-topic", d.events, "-group", stacktest.UniqueName("it_cqlauth"),
		"-cql-username", user, "-cql-password", wrong)...)
	for deadline := time.Now().Add(time.Minute); p.ExitCode() < 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("bandit-ingest with a wrong CQL password did not exit")
		}
	}
	out := p.Output()
	if p.ExitCode() == 0 || !strings.Contains(out, "connecting to the cold tier") || !strings.Contains(strings.ToLower(out), "password") ||
		strings.Contains(out, wrong) {
		t.Fatalf("exit %d, output:\n%s", p.ExitCode(), out)
	}
}

// The authenticated Kafka listeners: SASL/PLAIN, and TLS with
// SASL/SCRAM-SHA-512 (the certificate the local stack made, trusted through
// -kafka-tls-ca). bandit-stack's check produces and fetches through each
// with the password from a file, and a wrong password fails without showing
// it; bandit-score consumes and answers through each (group membership,
// fetches and writes all log in).
func TestKafkaAuthenticatedListeners(t *testing.T) {
	plainBroker, plainUser, plainPassword := stacktest.KafkaSASL(t)
	scramBroker, scramUser, scramPassword, ca := stacktest.KafkaSCRAM(t)
	for _, tc := range []struct {
		name, broker, password string
		flags                  []string
	}{
		{"plain", plainBroker, plainPassword, []string{"-kafka-sasl", "plain", "-kafka-username", plainUser}},
		{"tls+scram-sha-512", scramBroker, scramPassword, []string{"-kafka-sasl", "scram-sha-512", "-kafka-username", scramUser,
			"-kafka-tls", "-kafka-tls-ca", ca}},
	} {
		t.Run(tc.name, func(t *testing.T) { testKafkaListener(t, tc.broker, tc.password, tc.flags) })
	}
}

func testKafkaListener(t *testing.T, broker, password string, flags []string) {
	d := newDaemons(t)
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := append([]string{"-kafka-brokers", broker}, flags...)
	stack := stacktest.BuildBinary(t, "./cmd/bandit-stack")
	if out, err := exec.Command(stack, append(append([]string{"check"}, auth...), "-kafka-password-file", pwFile, "kafka")...).CombinedOutput(); err != nil {
		t.Fatalf("check through %s: %v\n%s", broker, err, out)
	}
	const wrong = "wrong-kafka-password-5"
	out, err := exec.Command(stack, append(append([]string{"check"}, auth...), "-kafka-password", wrong, "-kafka-timeout", "5s", "kafka")...).CombinedOutput()
	if err == nil || strings.Contains(string(out), wrong) {
		t.Fatalf("check with a wrong password: %v\n%s", err, out)
	}

	results := stacktest.CreateTopic(t, d.brokers, "it_auth_results", 1)
	args := append([]string{}, d.args...)
	for i := range args {
		if args[i] == d.brokers[0] {
			args[i] = broker
		}
	}
	addr, group := stacktest.FreeAddr(t), stacktest.UniqueName("it_auth")
	stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-score"), nil, append(append(args, flags...),
		"-kafka-password-file", pwFile, "-topic", d.requests, "-results-topic", results, "-group", group, "-ops-addr", addr, "-sessions=false")...)
	waitFor(t, addr, "/readyz", 200, time.Minute)
	v, _ := schemas.Protobuf.AppendScoreRequest(nil, &schemas.ScoreRequest{RequestId: "s1", UserId: "u", Candidates: []string{"x", "y"}, K: 1})
	w := &kafka.Writer{Addr: kafka.TCP(d.brokers...), Topic: d.requests, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("u"), Value: v}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	stacktest.WaitForLag(t, d.brokers, group, d.requests, time.Minute)
	if n := metrics(t, addr)["banditstream_requests_total"]["outcome=scored"]; n != 1 {
		t.Fatalf("scored %v requests through %s, want 1", n, broker)
	}
}

// The cold tier over TLS: Cassandra's native port accepts TLS with the
// local stack's certificate. bandit-stack's check queries through it, and
// bandit-ingest, with -cql-tls, creates its keyspace, turns ready and loads
// and offloads sessions through it; trusting only the system's
// authorities, the same connection fails on the certificate.
func TestCQLOverTLS(t *testing.T) {
	d := newDaemons(t)
	ca := stacktest.LocalCA(t)
	stack := stacktest.BuildBinary(t, "./cmd/bandit-stack")
	tls := []string{"-cql-hosts", d.cql, "-cql-tls", "-cql-tls-ca", ca}
	if out, err := exec.Command(stack, append(append([]string{"check"}, tls...), "cql")...).CombinedOutput(); err != nil {
		t.Fatalf("check over TLS: %v\n%s", err, out)
	}
	out, err := exec.Command(stack, "check", "-cql-hosts", d.cql, "-cql-tls", "-cql-timeout", "5s", "cql").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate") {
		t.Fatalf("check over TLS trusting only the system's authorities: %v\n%s", err, out)
	}

	addr := stacktest.FreeAddr(t)
	stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-ingest"), nil, append(append(d.args, tls[2:]...),
		"-topic", d.events, "-group", stacktest.UniqueName("it_cqltls"), "-ops-addr", addr, "-idle-timeout", "1s", "-sweep-interval", "200ms")...)
	waitFor(t, addr, "/readyz", 200, time.Minute)
	v, _ := schemas.Protobuf.AppendInteraction(nil, &schemas.Interaction{EventId: "e1", UserId: "u-tls", ItemId: "sku-1",
		Type: schemas.Click, EventTimeMs: time.Now().UnixMilli()})
	w := &kafka.Writer{Addr: kafka.TCP(d.brokers...), Topic: d.events, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("u-tls"), Value: v}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		m := metrics(t, addr)
		if m["banditstream_session_loads_total"][""] >= 1 && m["banditstream_session_offloads_total"][""] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session load and offload through TLS: %v %v", m["banditstream_session_loads_total"], m["banditstream_session_offloads_total"])
		}
	}
}

// SIGTERM under load, for the scorer: it answers what it fetched, commits
// and exits in time; the next start answers the rest and none again.
func TestScorerSIGTERMUnderLoadAnswersOnce(t *testing.T) {
	d := newDaemons(t)
	results := stacktest.CreateTopic(t, d.brokers, "it_term_results", 2)
	group := stacktest.UniqueName("it_term_score")
	bin := stacktest.BuildBinary(t, "./cmd/bandit-score")
	args := append(d.args, "-topic", d.requests, "-results-topic", results, "-group", group, "-sessions=false", "-fetch-max-bytes", "4096")
	const total = 30_000
	var msgs []kafka.Message
	for i := 0; i < total; i++ {
		v, _ := schemas.Protobuf.AppendScoreRequest(nil, &schemas.ScoreRequest{RequestId: "t" + strconv.Itoa(i), UserId: "u" + strconv.Itoa(i%100),
			Candidates: []string{"a", "b", "c", "d"}, K: 2})
		msgs = append(msgs, kafka.Message{Key: []byte("u" + strconv.Itoa(i%100)), Value: v})
	}
	w := &kafka.Writer{Addr: kafka.TCP(d.brokers...), Topic: d.requests, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	addr := stacktest.FreeAddr(t)
	p := stacktest.StartProcess(t, bin, nil, append(args, "-ops-addr", addr)...)
	waitFor(t, addr, "/healthz", 200, time.Minute)
	var before float64
	for deadline := time.Now().Add(time.Minute); before < 1000; time.Sleep(20 * time.Millisecond) {
		before = metrics(t, addr)["banditstream_requests_total"]["outcome=scored"]
		if time.Now().After(deadline) {
			t.Fatal("the scorer answered too little in a minute")
		}
	}
	took, clean := p.Stop(30 * time.Second)
	if !clean || p.ExitCode() != 0 || before >= total {
		t.Fatalf("SIGTERM after %v of %d answers: clean %v, code %d, in %s", before, total, clean, p.ExitCode(), took)
	}
	stacktest.StartProcess(t, bin, nil, args...)
	stacktest.WaitForLag(t, d.brokers, group, d.requests, 2*time.Minute)

	// Read every response back: each request answered exactly once.
	counts := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for part := 0; part < 2; part++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: d.brokers, Topic: results, Partition: part, MaxWait: 100 * time.Millisecond})
		lag, err := r.ReadLag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for n := int64(0); n < lag; n++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			counts[string(m.Key)]++
		}
		r.Close()
	}
	twice := 0
	for _, c := range counts {
		if c > 1 {
			twice++
		}
	}
	if len(counts) != total || twice > 0 {
		t.Fatalf("%d of %d requests answered, %d more than once (SIGTERM after %v answers, exit in %s)", len(counts), total, twice, before, took)
	}
	t.Logf("SIGTERM after at least %v answers: exit in %s; every request answered once across the two runs", before, took)
}

// A hot tier reached over TLS: bandit-stack's check writes through it when
// told to trust the server's certificate, and fails without TLS or without
// that trust.
func TestRedisOverTLS(t *testing.T) {
	addr, ca := stacktest.StartRedisTLS(t)
	stack := stacktest.BuildBinary(t, "./cmd/bandit-stack")
	check := func(args ...string) (string, error) {
		out, err := exec.Command(stack, append(append([]string{"check", "-redis-addr", addr}, args...), "redis")...).CombinedOutput()
		return string(out), err
	}
	if out, err := check("-redis-tls", "-redis-tls-ca", ca); err != nil || !strings.Contains(out, "redis: serving") {
		t.Fatalf("check over TLS: %v\n%s", err, out)
	}
	if out, err := check(); err == nil {
		t.Fatalf("plain connection to a TLS-only server passed:\n%s", out)
	}
	if out, err := check("-redis-tls"); err == nil || !strings.Contains(out, "certificate") {
		t.Fatalf("TLS without trusting the test certificate: %v\n%s", err, out)
	}
}

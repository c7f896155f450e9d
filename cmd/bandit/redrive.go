package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/producers"
	"github.com/banditstream/banditstream/schemas"
)

// HeaderRedrivenFrom marks a re-driven record with the dead letter it came
// from: "<dead-letter topic>/<partition>/<offset>"; HeaderRedrivenOrigin
// with the record the dead letter stands for: "<origin topic>/<partition>/
// <offset>".
const (
	HeaderRedrivenFrom   = "dlq-redriven-from"
	HeaderRedrivenOrigin = "dlq-redriven-origin"
)

// redriveCommand sends dead letters back to the topic they came from, each
// origin at most once however often it was dead-lettered, and however
// often the redrive runs or crashes.
//
// Progress is the offset committed for the dead-letter partition under
// -group (no group membership: one redrive per dead-letter topic at a
// time). Before publishing a batch it commits its start again with an
// intent (the end offsets of the target topics' partitions) as metadata;
// after the brokers acknowledge the batch it commits its end. A run that
// finds an intent (the previous one stopped in between) first reads the
// target topics from those offsets for records marked as re-driven, and
// passes over the dead letters of the origins it finds. A dead letter whose
// origin the run re-drove already (a record dead-lettered more than once)
// is passed over too. Offsets, not times: the check holds whatever the
// clocks and the topics' timestamp types.
func redriveCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, io.Reader, io.Writer, io.Writer) error {
	k := &conns.Kafka
	topic := fs.String("topic", config.TopicInteractions+config.DLQSuffix, "dead-letter topic to re-drive")
	group := fs.String("group", "banditstream-redrive", "consumer group that keeps the progress (a new group starts from the earliest dead letter)")
	errorContains := fs.String("error-contains", "", "re-drive only dead letters whose error contains this text; the others are passed over")
	contentType := fs.String("content-type", "", "set this content-type header on the re-driven records (the fix for records sent with a wrong or missing one)")
	batchSize := fs.Int("batch", 500, "dead letters per published batch")
	dryRun := fs.Bool("dry-run", false, "report what would be re-driven; write and commit nothing")
	faultStop := fs.Bool("fault-stop-after-publish", false, "fault injection for tests: exit after publishing the first batch, before committing it")
	return func(ctx context.Context, _ io.Reader, stdout, stderr io.Writer) error {
		if *contentType != "" {
			if _, err := schemas.CodecFor(*contentType); err != nil {
				return fmt.Errorf("-content-type: %w", err)
			}
		}
		client, dialer, err := k.Clients()
		if err != nil {
			return err
		}
		rd := &redriver{
			brokers: k.Brokers, topic: *topic, group: *group, errorContains: *errorContains,
			contentType: *contentType, batch: max(*batchSize, 1), dryRun: *dryRun, faultStop: *faultStop,
			client: client, dialer: dialer,
			w: producers.NewSyncWriter(producers.WriterConfig{Brokers: k.Brokers,
				BatchTimeout: 5 * time.Millisecond, BatchBytes: 16 << 20, WriteTimeout: k.Timeout, Transport: client.Transport}),
			stderr: stderr,
		}
		defer rd.w.Close()
		ranges, err := partitionRanges(ctx, rd.client, *topic)
		if err != nil {
			return err
		}
		var st redriveStats
		for _, pr := range ranges {
			if err := rd.partition(ctx, pr, &st); err != nil {
				return fmt.Errorf("%s/%d: %w", *topic, pr.partition, err)
			}
		}
		verb := "re-drove"
		if *dryRun {
			verb = "would re-drive"
		}
		fmt.Fprintf(stdout, "%s %d dead letters from %s; passed over %d (filter), %d (origin re-driven before), %d (value cut, cannot be re-driven)\n",
			verb, st.sent, *topic, st.filtered, st.already, st.truncated)
		return nil
	}
}

type redriveStats struct{ sent, filtered, already, truncated int }

type redriver struct {
	brokers       []string
	topic, group  string
	errorContains string
	contentType   string
	batch         int
	dryRun        bool
	faultStop     bool
	client        *kafka.Client
	dialer        *kafka.Dialer
	w             *kafka.Writer
	stderr        io.Writer
}

func (rd *redriver) committed(ctx context.Context, partition int) (int64, string, error) {
	resp, err := rd.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: rd.group, Topics: map[string][]int{rd.topic: {partition}}})
	if err != nil {
		return 0, "", err
	}
	if resp.Error != nil {
		return 0, "", resp.Error
	}
	for _, p := range resp.Topics[rd.topic] {
		if p.Partition == partition {
			return p.CommittedOffset, p.Metadata, p.Error
		}
	}
	return -1, "", nil
}

func (rd *redriver) commit(ctx context.Context, partition int, offset int64, metadata string) error {
	resp, err := rd.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID: rd.group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{rd.topic: {{Partition: partition, Offset: offset, Metadata: metadata}}},
	})
	if err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	for _, p := range resp.Topics[rd.topic] {
		if p.Error != nil {
			return fmt.Errorf("committing: %w", p.Error)
		}
	}
	return nil
}

// targetEnds are the end offsets of the target topics' partitions before a
// batch is published: topic → partition → offset.
type targetEnds map[string]map[int]int64

// ends reads the end offsets of every partition of topics.
func (rd *redriver) ends(ctx context.Context, topics []string) (targetEnds, error) {
	out := targetEnds{}
	for _, t := range topics {
		ranges, err := partitionRanges(ctx, rd.client, t)
		if err != nil {
			return nil, err
		}
		out[t] = map[int]int64{}
		for _, r := range ranges {
			out[t][r.partition] = r.last
		}
	}
	return out, nil
}

// intent is the metadata committed before a batch is published:
// "intent2:" then "<topic>@<partition>=<offset>,…" per target topic, ';'
// between topics (topic names hold neither '@' nor ';').
func intent(ends targetEnds) string {
	var b strings.Builder
	b.WriteString("intent2:")
	first := true
	for t, parts := range ends {
		if !first {
			b.WriteByte(';')
		}
		first = false
		b.WriteString(t)
		b.WriteByte('@')
		sep := ""
		for p, off := range parts {
			b.WriteString(sep + strconv.Itoa(p) + "=" + strconv.FormatInt(off, 10))
			sep = ","
		}
	}
	return b.String()
}

func parseIntent(md string) (targetEnds, bool) {
	rest, ok := strings.CutPrefix(md, "intent2:")
	if !ok {
		return nil, false
	}
	out := targetEnds{}
	for _, part := range strings.Split(rest, ";") {
		t, list, ok := strings.Cut(part, "@")
		if !ok {
			return nil, false
		}
		out[t] = map[int]int64{}
		for _, po := range strings.Split(list, ",") {
			ps, os, ok := strings.Cut(po, "=")
			p, err1 := strconv.Atoi(ps)
			off, err2 := strconv.ParseInt(os, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				return nil, false
			}
			out[t][p] = off
		}
	}
	return out, true
}

func (rd *redriver) partition(ctx context.Context, pr partitionRange, st *redriveStats) error {
	from, md, err := rd.committed(ctx, pr.partition)
	if err != nil {
		return err
	}
	from = max(from, pr.first)
	// The origins re-driven: by the last run's unfinished batch, then by
	// this run.
	sent := map[string]bool{}
	if ends, ok := parseIntent(md); ok {
		if err := rd.alreadySent(ctx, ends, sent); err != nil {
			return err
		}
		fmt.Fprintf(rd.stderr, "%s/%d: the last run stopped mid-batch; %d of its dead letters were published and are skipped\n", rd.topic, pr.partition, len(sent))
	}
	if from >= pr.last {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: rd.brokers, Topic: rd.topic, Partition: pr.partition, MaxWait: 200 * time.Millisecond, MaxBytes: 16 << 20, Dialer: rd.dialer})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return err
	}
	for start := from; start < pr.last; {
		var msgs []kafka.Message
		topics := map[string]bool{}
		next := start
		for next < pr.last && len(msgs) < rd.batch {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				return err
			}
			next = m.Offset + 1
			out, origin, reason := rd.redriven(m)
			switch {
			case reason == "filter":
				st.filtered++
			case reason == "truncated":
				st.truncated++
				fmt.Fprintf(rd.stderr, "%s/%d/%d: value cut to %d bytes in the dead-letter topic; not re-driven\n", rd.topic, m.Partition, m.Offset, len(m.Value))
			case sent[origin]:
				st.already++
			default:
				sent[origin] = true
				msgs = append(msgs, out)
				topics[out.Topic] = true
			}
		}
		if rd.dryRun {
			st.sent += len(msgs)
			start = next
			continue
		}
		if len(msgs) > 0 {
			var names []string
			for t := range topics {
				names = append(names, t)
			}
			// The records land at or after these offsets: a search from
			// them finds them.
			ends, err := rd.ends(ctx, names)
			if err != nil {
				return err
			}
			if err := rd.commit(ctx, pr.partition, start, intent(ends)); err != nil {
				return err
			}
			if err := rd.w.WriteMessages(ctx, msgs...); err != nil {
				return fmt.Errorf("publishing %d records: %w", len(msgs), err)
			}
			if rd.faultStop {
				fmt.Fprintln(rd.stderr, "stopping after the publish, before the commit (-fault-stop-after-publish)")
				os.Exit(3)
			}
		}
		if err := rd.commit(ctx, pr.partition, next, ""); err != nil {
			return err
		}
		st.sent += len(msgs)
		start = next
	}
	return nil
}

// redriven returns the record to publish for dead letter m and the
// position of its origin, or why it is passed over.
func (rd *redriver) redriven(m kafka.Message) (kafka.Message, string, string) {
	var origin, originPartition, originOffset, errText string
	var headers []kafka.Header
	for _, h := range m.Headers {
		switch {
		case h.Key == consumers.HeaderOriginTopic:
			origin = string(h.Value)
		case h.Key == consumers.HeaderOriginPartition:
			originPartition = string(h.Value)
		case h.Key == consumers.HeaderOriginOffset:
			originOffset = string(h.Value)
		case h.Key == consumers.HeaderError:
			errText = string(h.Value)
		case h.Key == consumers.HeaderTruncated || h.Key == consumers.HeaderKeyTruncated || h.Key == consumers.HeaderHeadersTruncated:
			return kafka.Message{}, "", "truncated"
		case strings.HasPrefix(h.Key, "dlq-"):
		case h.Key == schemas.HeaderContentType && rd.contentType != "":
		default:
			headers = append(headers, h)
		}
	}
	if origin == "" || !strings.Contains(errText, rd.errorContains) {
		return kafka.Message{}, "", "filter"
	}
	// A dead letter written before its origin's position was recorded
	// stands for itself.
	position := origin + "/" + originPartition + "/" + originOffset
	if originPartition == "" || originOffset == "" {
		position = redrivenFrom(rd.topic, m.Partition, m.Offset)
	}
	if rd.contentType != "" {
		headers = append(headers, kafka.Header{Key: schemas.HeaderContentType, Value: []byte(rd.contentType)})
	}
	headers = append(headers,
		kafka.Header{Key: HeaderRedrivenFrom, Value: []byte(redrivenFrom(rd.topic, m.Partition, m.Offset))},
		kafka.Header{Key: HeaderRedrivenOrigin, Value: []byte(position)})
	return kafka.Message{Topic: origin, Key: m.Key, Value: m.Value, Headers: headers}, position, ""
}

func redrivenFrom(topic string, partition int, offset int64) string {
	return topic + "/" + strconv.Itoa(partition) + "/" + strconv.FormatInt(offset, 10)
}

// alreadySent reads the target topics from the offsets of an intent to
// their end and adds to sent the origins found re-driven there.
func (rd *redriver) alreadySent(ctx context.Context, from targetEnds, sent map[string]bool) error {
	for t := range from {
		now, err := rd.ends(ctx, []string{t})
		if err != nil {
			return err
		}
		for p, end := range now[t] {
			if start := from[t][p]; start < end {
				if err := rd.scan(ctx, t, p, start, end, sent); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (rd *redriver) scan(ctx context.Context, topic string, partition int, start, end int64, sent map[string]bool) error {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: rd.brokers, Topic: topic, Partition: partition, MaxWait: 200 * time.Millisecond, MaxBytes: 16 << 20, Dialer: rd.dialer})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return err
	}
	for r.Offset() < end {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return err
		}
		for _, h := range m.Headers {
			if h.Key == HeaderRedrivenOrigin {
				sent[string(h.Value)] = true
			}
		}
	}
	return nil
}

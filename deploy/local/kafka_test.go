package local_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
)

// A consumer group member fetches, commits part of what it fetched, and
// stops; the next member of the group resumes right after the committed
// offset, so uncommitted messages are delivered again and committed ones
// are not.
func TestKafkaGroupResumesAfterCommittedOffset(t *testing.T) {
	brokers := stacktest.KafkaBrokers(t)
	topic := stacktest.CreateTopic(t, brokers, "it_group", 1)
	group := stacktest.UniqueName("it_group")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	w := &kafka.Writer{
		Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.LeastBytes{}, BatchTimeout: 5 * time.Millisecond,
	}
	defer w.Close()
	const total = 20
	msgs := make([]kafka.Message, total)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte("u"), Value: []byte(fmt.Sprintf("m-%02d", i))}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("producing: %v", err)
	}

	newReader := func() *kafka.Reader {
		return kafka.NewReader(kafka.ReaderConfig{
			Brokers: brokers, GroupID: group, Topic: topic,
			StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
			// Commits are explicit, after the work is done.
			CommitInterval: 0,
		})
	}

	const committed = 12 // commit messages 0..11, fetch up to 15
	r := newReader()
	var toCommit kafka.Message
	for i := 0; i < 16; i++ {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if want := fmt.Sprintf("m-%02d", i); string(m.Value) != want || m.Offset != int64(i) {
			t.Fatalf("fetch %d: got offset %d %q, want %d %q", i, m.Offset, m.Value, i, want)
		}
		if i == committed-1 {
			toCommit = m
		}
	}
	if err := r.CommitMessages(ctx, toCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("closing the first reader: %v", err)
	}

	r2 := newReader()
	defer r2.Close()
	for i := committed; i < total; i++ {
		m, err := r2.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("fetch after restart: %v", err)
		}
		if m.Offset != int64(i) || string(m.Value) != fmt.Sprintf("m-%02d", i) {
			t.Fatalf("after restart got offset %d %q, want offset %d", m.Offset, m.Value, i)
		}
	}
	if err := r2.CommitMessages(ctx, kafka.Message{Topic: topic, Partition: 0, Offset: total - 1}); err != nil {
		t.Fatalf("commit after restart: %v", err)
	}
	lag := readGroupOffset(ctx, t, brokers, group, topic)
	if lag != total {
		t.Fatalf("group's committed offset is %d, want %d", lag, total)
	}
}

func readGroupOffset(ctx context.Context, t *testing.T, brokers []string, group, topic string) int64 {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err != nil {
		t.Fatalf("fetching the group's offsets: %v", err)
	}
	parts := resp.Topics[topic]
	if len(parts) != 1 || parts[0].Error != nil {
		t.Fatalf("group offsets for %s: %+v", topic, parts)
	}
	return parts[0].CommittedOffset
}

package producers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/schemas"
)

// RankConfig configures a RankClient. Zero fields take the documented
// defaults.
type RankConfig struct {
	Config
	// RequestsTopic is where requests go; default "score-requests".
	RequestsTopic string
	// ReplyTopic is this client's own topic for responses. Empty: the client
	// creates "score-replies.<random>" (one partition) and deletes it on
	// Close. Two clients must not share a reply topic: each reads all of it.
	ReplyTopic string
	// Timeout bounds waiting for a response when the caller's context has
	// no deadline; default 5 s. Requests without a deadline get this one,
	// so the scorer skips a request whose caller gave up.
	Timeout time.Duration
}

// RankClient sends score requests and returns their responses, matched by
// request id on the client's own reply topic. It is safe for concurrent
// use: any number of requests may be in flight.
type RankClient struct {
	cfg     RankConfig
	w       *kafka.Writer
	client  *kafka.Client
	created bool

	mu      sync.Mutex
	pending map[string]chan *schemas.ScoreResponse

	stop    context.CancelFunc
	readers sync.WaitGroup
	readErr error
}

// NewRankClient creates the reply topic if needed and starts reading it
// from its end.
func NewRankClient(ctx context.Context, cfg RankConfig) (*RankClient, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rank client: %w", err)
	}
	if cfg.RequestsTopic == "" {
		cfg.RequestsTopic = schemas.TopicScoreRequests
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	c := &RankClient{cfg: cfg, w: cfg.writer(), pending: map[string]chan *schemas.ScoreResponse{},
		client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: cfg.Transport, Timeout: cfg.WriteTimeout}}
	if c.cfg.ReplyTopic == "" {
		c.cfg.ReplyTopic = "score-replies." + NewEventID()[:16]
		if err := c.createReplyTopic(ctx); err != nil {
			return nil, err
		}
		c.created = true
	}
	ends, err := c.replyEnds(ctx)
	if err != nil {
		return nil, errors.Join(err, c.deleteReplyTopic())
	}
	rctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	for partition, end := range ends {
		c.readers.Add(1)
		go func() {
			defer c.readers.Done()
			c.read(rctx, partition, end)
		}()
	}
	return c, nil
}

// ReplyTopic returns the client's reply topic.
func (c *RankClient) ReplyTopic() string { return c.cfg.ReplyTopic }

func (c *RankClient) createReplyTopic(ctx context.Context) error {
	resp, err := c.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: c.cfg.ReplyTopic, NumPartitions: 1, ReplicationFactor: -1,
		// Responses are read as they arrive: an hour of them is plenty.
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "3600000"}},
	}}})
	if err == nil {
		err = resp.Errors[c.cfg.ReplyTopic]
	}
	if err != nil {
		return fmt.Errorf("creating reply topic %s: %w", c.cfg.ReplyTopic, err)
	}
	return nil
}

func (c *RankClient) deleteReplyTopic() error {
	if !c.created {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.WriteTimeout)
	defer cancel()
	resp, err := c.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{c.cfg.ReplyTopic}})
	if err == nil {
		err = resp.Errors[c.cfg.ReplyTopic]
	}
	if err != nil {
		return fmt.Errorf("deleting reply topic %s: %w", c.cfg.ReplyTopic, err)
	}
	return nil
}

// replyEnds returns the end offset of every partition of the reply topic:
// reading starts there, fixed before any request is sent, so no response
// can slip in between. A topic just created takes a moment to have
// leaders: failures are retried for up to 10 s.
func (c *RankClient) replyEnds(ctx context.Context) (map[int]int64, error) {
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		var ends map[int]int64
		if ends, err = c.tryReplyEnds(ctx); err == nil {
			return ends, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reply topic %s: %w", c.cfg.ReplyTopic, errors.Join(err, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("reply topic %s: %w", c.cfg.ReplyTopic, err)
}

func (c *RankClient) tryReplyEnds(ctx context.Context) (map[int]int64, error) {
	topic := c.cfg.ReplyTopic
	meta, err := c.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil || len(meta.Topics[0].Partitions) == 0 {
		if len(meta.Topics) == 1 && meta.Topics[0].Error != nil {
			return nil, meta.Topics[0].Error
		}
		return nil, errors.New("no partitions yet")
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range meta.Topics[0].Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p.ID))
	}
	resp, err := c.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, err
	}
	ends := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", po.Partition, po.Error)
		}
		ends[po.Partition] = po.LastOffset
	}
	if len(ends) != len(meta.Topics[0].Partitions) {
		return nil, errors.New("not every partition has an end offset yet")
	}
	return ends, nil
}

// read delivers the responses of one reply partition until ctx ends.
func (c *RankClient) read(ctx context.Context, partition int, from int64) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: c.cfg.Brokers, Topic: c.cfg.ReplyTopic, Partition: partition,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 50 * time.Millisecond,
		Dialer: c.dialer(),
	})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		c.fail(err)
		return
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.fail(err)
			}
			return
		}
		codec, err := schemas.CodecFor(headerValue(m.Headers, schemas.HeaderContentType))
		if err != nil {
			continue
		}
		resp := &schemas.ScoreResponse{}
		if codec.DecodeScoreResponse(c.cfg.Limits, m.Value, resp) != nil {
			continue
		}
		c.mu.Lock()
		ch := c.pending[resp.GetRequestId()]
		delete(c.pending, resp.GetRequestId())
		c.mu.Unlock()
		if ch != nil {
			ch <- resp // buffered: never blocks; a duplicate finds no channel
		}
	}
}

func (c *RankClient) dialer() *kafka.Dialer {
	if c.cfg.Dialer != nil {
		return c.cfg.Dialer
	}
	return &kafka.Dialer{Timeout: c.cfg.WriteTimeout}
}

func (c *RankClient) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr == nil {
		c.readErr = fmt.Errorf("reading reply topic %s: %w", c.cfg.ReplyTopic, err)
	}
}

// ErrNoResponse is returned when a request's response did not arrive in
// time.
var ErrNoResponse = errors.New("no response")

// Rank sends req and returns its response. It sets the request's reply
// topic to the client's, its request id if empty (NewEventID), its sent
// time, and its deadline if unset (the context's, else now + Timeout).
func (c *RankClient) Rank(ctx context.Context, req *schemas.ScoreRequest) (*schemas.ScoreResponse, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	budget := time.Until(deadline).Round(time.Millisecond)
	if req.GetRequestId() == "" {
		req.RequestId = NewEventID()
	}
	req.ReplyTopic = c.cfg.ReplyTopic
	req.SentTimeMs = time.Now().UnixMilli()
	if req.GetDeadlineMs() == 0 {
		req.DeadlineMs = deadline.UnixMilli()
	}
	if err := c.cfg.Limits.CheckScoreRequest(req); err != nil {
		return nil, err
	}
	v, err := c.cfg.Codec.AppendScoreRequest(nil, req)
	if err != nil {
		return nil, err
	}
	id := req.GetRequestId()
	ch := make(chan *schemas.ScoreResponse, 1)
	c.mu.Lock()
	if c.readErr != nil {
		err := c.readErr
		c.mu.Unlock()
		return nil, err
	}
	if _, dup := c.pending[id]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("request id %s already in flight", id)
	}
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
	msg := kafka.Message{Topic: c.cfg.RequestsTopic, Key: []byte(req.GetUserId()), Value: v, Headers: c.cfg.headers()}
	if err := c.w.WriteMessages(ctx, msg); err != nil {
		forget()
		return nil, fmt.Errorf("sending request %s: %w", id, err)
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("request %s: %w within %s: %w", id, ErrNoResponse, budget, ctx.Err())
	}
}

// Close stops reading, releases the connections and deletes the reply
// topic if the client created it. Requests in flight fail.
func (c *RankClient) Close() error {
	c.stop()
	c.readers.Wait()
	return errors.Join(c.w.Close(), c.deleteReplyTopic())
}

func headerValue(headers []kafka.Header, key string) string {
	for _, h := range headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

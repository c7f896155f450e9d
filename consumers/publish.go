package consumers

// Publishing a batch's responses and dead letters: the scorer's write
// step, retried until every message is acknowledged.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/schemas"
)

// responseHeaders are a response's headers by codec, shared by every
// message: the writer only reads them.
var responseHeaders = map[schemas.Codec][]kafka.Header{
	schemas.Protobuf: {{Key: schemas.HeaderContentType, Value: []byte(schemas.Protobuf.ContentType())}},
	schemas.JSON:     {{Key: schemas.HeaderContentType, Value: []byte(schemas.JSON.ContentType())}},
}

// publish writes the batch's responses and dead letters and returns once
// all are acknowledged. Failures are retried until ctx ends (the batch is
// then fetched and answered again). A reply topic the brokers do not know
// is retried for ReplyTopicWait (a client's new topic takes a metadata
// refresh to be seen), then its requests go to the dead-letter topic
// instead (redirected counts them).
func (w *scoreWorker) publish(ctx context.Context, batch []record) (redirected int, err error) {
	s := w.s
	msgs, origin := w.out, w.origin
	var unknownSince time.Time
	for attempt := 0; len(msgs) > 0; attempt++ {
		err := s.out.WriteMessages(ctx, msgs...)
		if err == nil {
			return redirected, nil
		}
		var werrs kafka.WriteErrors
		switch {
		case errors.As(err, &werrs) && len(werrs) == len(msgs):
			var large []int
			msgs, origin, large = failedOnly(msgs, origin, werrs)
			if len(large) > 0 {
				var n int
				msgs, origin, n = w.publishLarge(ctx, batch, msgs, origin, large)
				redirected += n
			}
		case errors.Is(err, kafka.MessageSizeTooLarge):
			// The writer's own check: one message is larger than its
			// BatchBytes. Find it by writing one by one.
			all := make([]int, len(msgs))
			for i := range all {
				all[i] = i
			}
			var n int
			msgs, origin, n = w.publishLarge(ctx, batch, msgs, origin, all)
			redirected += n
		case errors.Is(err, kafka.UnknownTopicOrPartition):
			// The writer checks every topic before writing anything: write
			// topic by topic, so one unknown reply topic holds back only
			// its own responses.
			if unknownSince.IsZero() {
				unknownSince = time.Now()
			}
			var n int
			msgs, origin, n = w.publishByTopic(ctx, batch, msgs, origin, time.Since(unknownSince) >= s.cfg.ReplyTopicWait)
			redirected += n
		}
		if len(msgs) == 0 {
			return redirected, nil
		}
		if ctx.Err() != nil {
			return redirected, fmt.Errorf("publishing: %d messages not acknowledged: %w", len(msgs), firstError(err))
		}
		if attempt > 0 {
			s.log.Warn("publishing; retrying", "messages", len(msgs), "err", firstError(err))
		}
		b := backoff{d: min(100*time.Millisecond<<min(attempt, 5), 2*time.Second)}
		b.wait(ctx)
	}
	return redirected, nil
}

// failedOnly returns the messages whose write failed, and the indexes
// among them of those refused as too large: a broker refuses a whole
// partition's batch when it passes the topic's max.message.bytes, though
// each message alone may fit.
func failedOnly(msgs []kafka.Message, origin []int, werrs kafka.WriteErrors) ([]kafka.Message, []int, []int) {
	var retry []kafka.Message
	var retryOrigin, large []int
	for i, e := range werrs {
		if e != nil {
			if errors.Is(e, kafka.MessageSizeTooLarge) {
				large = append(large, len(retry))
			}
			retry = append(retry, msgs[i])
			retryOrigin = append(retryOrigin, origin[i])
		}
	}
	return retry, retryOrigin, large
}

// publishLarge writes the messages at indexes large of msgs one at a time,
// and returns msgs without those written. A response too large for its
// topic even alone is permanent: it becomes its request's dead letter,
// written at once (counted in redirected); a dead letter too large is
// reduced to its headers. Other failures stay in msgs, to be retried.
func (w *scoreWorker) publishLarge(ctx context.Context, batch []record, msgs []kafka.Message, origin, large []int) ([]kafka.Message, []int, int) {
	done := make([]bool, len(msgs))
	redirected := 0
	for _, i := range large {
		m := msgs[i]
		err := w.s.out.WriteMessages(ctx, m)
		if tooLarge(err) {
			if origin[i] >= 0 {
				cause := fmt.Errorf("response of %d bytes is larger than topic %s accepts: %w", len(m.Key)+len(m.Value), m.Topic, err)
				// The dead letter replaces the response, written or not.
				msgs[i], origin[i] = w.deadLetter(&batch[origin[i]], cause), -1
				redirected++
				m = msgs[i]
			} else {
				m = reducedDeadLetter(m)
			}
			err = w.s.out.WriteMessages(ctx, m)
		}
		done[i] = err == nil
	}
	var left []kafka.Message
	var leftOrigin []int
	for i := range msgs {
		if !done[i] {
			left = append(left, msgs[i])
			leftOrigin = append(leftOrigin, origin[i])
		}
	}
	return left, leftOrigin, redirected
}

// publishByTopic writes msgs one topic at a time and returns those still to
// write. With giveUp, responses to a reply topic the brokers do not know
// become dead letters of their requests (returned to be written, and
// counted); the results topic is never given up on: its absence is a
// deployment error, retried until fixed.
func (w *scoreWorker) publishByTopic(ctx context.Context, batch []record, msgs []kafka.Message, origin []int, giveUp bool) ([]kafka.Message, []int, int) {
	byTopic := map[string][]int{}
	var topics []string
	for i, m := range msgs {
		if byTopic[m.Topic] == nil {
			topics = append(topics, m.Topic)
		}
		byTopic[m.Topic] = append(byTopic[m.Topic], i)
	}
	var left []kafka.Message
	var leftOrigin []int
	redirected := 0
	for _, t := range topics {
		group := make([]kafka.Message, 0, len(byTopic[t]))
		for _, i := range byTopic[t] {
			group = append(group, msgs[i])
		}
		err := w.s.out.WriteMessages(ctx, group...)
		if err == nil {
			continue
		}
		reply := t != w.s.cfg.ResultsTopic && t != schemas.DeadLetterTopic(w.s.cfg.Topic)
		for _, i := range byTopic[t] {
			if giveUp && reply && errors.Is(err, kafka.UnknownTopicOrPartition) && origin[i] >= 0 {
				cause := fmt.Errorf("reply topic %q: %w", t, kafka.UnknownTopicOrPartition)
				left = append(left, w.deadLetter(&batch[origin[i]], cause))
				leftOrigin = append(leftOrigin, -1)
				redirected++
				continue
			}
			left = append(left, msgs[i])
			leftOrigin = append(leftOrigin, origin[i])
		}
	}
	return left, leftOrigin, redirected
}

// deadLetter returns the dead letter of a request.
func (w *scoreWorker) deadLetter(r *record, cause error) kafka.Message {
	m := deadLetter(w.s.cfg.Topic, w.partition, r, cause)
	m.Topic = schemas.DeadLetterTopic(w.s.cfg.Topic)
	return m
}

// firstError is err, or the first of a batch's write errors: one per
// message would make a line of the log per thousand messages.
func firstError(err error) error {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		for _, e := range werrs {
			if e != nil {
				return fmt.Errorf("%d of %d messages failed, the first: %w", werrs.Count(), len(werrs), e)
			}
		}
	}
	return err
}

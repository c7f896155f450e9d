package consumers

// Publishing a batch's responses and dead letters: the scorer's write
// step, retried until every message is acknowledged.

import (
	"bytes"
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
	schemas.Protobuf:       {{Key: schemas.HeaderContentType, Value: []byte(schemas.Protobuf.ContentType())}},
	schemas.JSON:           {{Key: schemas.HeaderContentType, Value: []byte(schemas.JSON.ContentType())}},
	schemas.ProtoJSON:      {{Key: schemas.HeaderContentType, Value: []byte(schemas.ProtoJSON.ContentType())}},
	schemas.ProtoJSONNames: {{Key: schemas.HeaderContentType, Value: []byte(schemas.ProtoJSONNames.ContentType())}},
}

// The W3C trace context headers a request may carry; its response and
// decision carry them on, so a caller's tracing follows one ranking from
// request to response (its dead letter keeps every header anyway).
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// maxTraceHeaderBytes bounds a trace header carried on (traceparent is 55
// bytes; tracestate at most 32 entries of about 512 bytes in all).
const maxTraceHeaderBytes = 1024

// withTrace returns base, or a copy of it with r's trace context headers
// when r has any: requests without them share base, allocating nothing.
func withTrace(base []kafka.Header, r *record) []kafka.Header {
	var out []kafka.Header
	for _, h := range r.headers {
		if (h.Key == HeaderTraceparent || h.Key == HeaderTracestate) && len(h.Value) <= maxTraceHeaderBytes {
			if out == nil {
				out = append(make([]kafka.Header, 0, len(base)+2), base...)
			}
			out = append(out, h)
		}
	}
	if out == nil {
		return base
	}
	return out
}

// publish writes the batch's responses and dead letters and returns once
// all are acknowledged, but for responses to a reply topic the brokers do
// not know (yet: a client's new topic takes a metadata refresh to be
// seen), which are parked (see park) so they hold back no other request.
// Other failures are retried until ctx ends (the batch is then fetched and
// answered again). redirected counts the requests answered with a dead
// letter instead, parked those whose responses wait.
func (w *scoreWorker) publish(ctx context.Context, batch []record) (redirected, parked int, err error) {
	s := w.s
	msgs, origin := w.out, w.origin
	for attempt := 0; len(msgs) > 0; attempt++ {
		err := s.out.WriteMessages(ctx, msgs...)
		if err == nil {
			return redirected, parked, nil
		}
		var werrs kafka.WriteErrors
		switch {
		case errors.As(err, &werrs) && len(werrs) == len(msgs):
			var alone []int
			msgs, origin, alone = failedOnly(msgs, origin, werrs)
			if len(alone) > 0 {
				var n int
				msgs, origin, n = w.publishAlone(ctx, batch, msgs, origin, alone)
				redirected += n
			}
		case isTooLarge(err):
			// The writer's own check: one message is larger than its
			// BatchBytes. Find it by writing one by one.
			all := make([]int, len(msgs))
			for i := range all {
				all[i] = i
			}
			var n int
			msgs, origin, n = w.publishAlone(ctx, batch, msgs, origin, all)
			redirected += n
		case errors.Is(err, kafka.UnknownTopicOrPartition) || refusedForGood(err):
			// The writer checks every topic before writing anything: write
			// topic by topic, park the responses to unknown reply topics,
			// and dead-letter the requests whose topic refuses them.
			var n, p int
			msgs, origin, n, p = w.publishByTopic(ctx, batch, msgs, origin)
			redirected += n
			parked += p
		}
		if len(msgs) == 0 {
			return redirected, parked, nil
		}
		if ctx.Err() != nil {
			return redirected, parked, fmt.Errorf("publishing: %d messages not acknowledged: %w", len(msgs), firstError(err))
		}
		if attempt > 0 {
			s.log.Warn("publishing; retrying", "messages", len(msgs), "err", firstError(err))
		}
		b := backoff{d: min(100*time.Millisecond<<min(attempt, 5), 2*time.Second)}
		b.wait(ctx)
	}
	return redirected, parked, nil
}

// publishDecisions writes the batch's decisions once its responses are
// acknowledged, retrying until ctx ends (the batch is then answered and
// decided again). A decision its topic refuses for good, or too large for
// it even alone, is dropped and counted: a log of decisions never holds
// the partition.
func (w *scoreWorker) publishDecisions(ctx context.Context) error {
	s := w.s
	msgs := w.decisions
	for attempt := 0; len(msgs) > 0; attempt++ {
		err := s.out.WriteMessages(ctx, msgs...)
		if err == nil {
			s.decisions.Add(int64(len(msgs)))
			return nil
		}
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(msgs) {
			var left []kafka.Message
			for i, e := range werrs {
				switch {
				case e == nil:
					s.decisions.Add(1)
				case isTooLarge(e) || refusedForGood(e):
					// A broker refuses a whole partition's batch past its
					// limit: alone, the decision may fit.
					if !w.decisionAlone(ctx, msgs[i]) {
						left = append(left, msgs[i])
					}
				default:
					left = append(left, msgs[i])
				}
			}
			msgs = left
		} else if isTooLarge(err) || refusedForGood(err) {
			var left []kafka.Message
			for _, m := range msgs {
				if !w.decisionAlone(ctx, m) {
					left = append(left, m)
				}
			}
			msgs = left
		}
		if len(msgs) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("publishing decisions: %d not acknowledged: %w", len(msgs), firstError(err))
		}
		if attempt > 0 {
			s.log.Warn("publishing decisions; retrying", "messages", len(msgs), "err", firstError(err))
		}
		b := backoff{d: min(100*time.Millisecond<<min(attempt, 5), 2*time.Second)}
		b.wait(ctx)
	}
	return nil
}

// decisionAlone writes one decision alone, retrying transient failures,
// and drops it if its topic refuses it for good; false if ctx ended first.
func (w *scoreWorker) decisionAlone(ctx context.Context, m kafka.Message) bool {
	s := w.s
	for attempt := 0; ; attempt++ {
		err := s.out.WriteMessages(ctx, m)
		switch {
		case err == nil:
			s.decisions.Add(1)
			return true
		case tooLarge(err) || refusedForGood(err):
			s.decisionsDropped.Add(1)
			s.log.Warn("decision dropped: refused by its topic", "topic", m.Topic, "bytes", len(m.Key)+len(m.Value), "err", firstError(err))
			return true
		case ctx.Err() != nil:
			return false
		}
		b := backoff{d: min(100*time.Millisecond<<min(attempt, 5), 2*time.Second)}
		b.wait(ctx)
	}
}

// failedOnly returns the messages whose write failed, and the indexes
// among them of those to write alone: refused as too large (a broker
// refuses a whole partition's batch when it passes the topic's
// max.message.bytes, though each message alone may fit) or for good (the
// broker's refusal names no message: alone, it names that one).
func failedOnly(msgs []kafka.Message, origin []int, werrs kafka.WriteErrors) ([]kafka.Message, []int, []int) {
	var retry []kafka.Message
	var retryOrigin, large []int
	for i, e := range werrs {
		if e != nil {
			if isTooLarge(e) || refusedForGood(e) {
				large = append(large, len(retry))
			}
			retry = append(retry, msgs[i])
			retryOrigin = append(retryOrigin, origin[i])
		}
	}
	return retry, retryOrigin, large
}

// publishAlone writes the messages at indexes alone of msgs one at a time,
// and returns msgs without those written. A response too large for its
// topic even alone, or refused for good, is permanent: it becomes its
// request's dead letter, with the reason, written at once (counted in
// redirected); a dead letter too large is reduced to its headers. Other
// failures stay in msgs, to be retried.
func (w *scoreWorker) publishAlone(ctx context.Context, batch []record, msgs []kafka.Message, origin, alone []int) ([]kafka.Message, []int, int) {
	done := make([]bool, len(msgs))
	redirected := 0
	for _, i := range alone {
		m := msgs[i]
		err := w.s.out.WriteMessages(ctx, m)
		if origin[i] >= 0 && refusedForGood(err) {
			cause := fmt.Errorf("topic %s refused the response: %w", m.Topic, firstError(err))
			msgs[i], origin[i] = w.deadLetter(&batch[origin[i]], cause), -1
			redirected++
			m = msgs[i]
			err = w.s.out.WriteMessages(ctx, m)
		}
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
// write. Responses to a reply topic the brokers do not know are parked
// (counted in parked), or, with the parking full, become dead letters of
// their requests at once (returned to be written, and counted in
// redirected); the results topic is never given up on: its absence is a
// deployment error, retried until fixed.
func (w *scoreWorker) publishByTopic(ctx context.Context, batch []record, msgs []kafka.Message, origin []int) (left []kafka.Message, leftOrigin []int, redirected, parked int) {
	topics, byTopic := groupByTopic(len(msgs), func(i int) string { return msgs[i].Topic })
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
		var werrs kafka.WriteErrors
		perMessage := errors.As(err, &werrs) && len(werrs) == len(group)
		for j, i := range byTopic[t] {
			err := err
			if perMessage {
				if err = werrs[j]; err == nil {
					continue // written
				}
			}
			if origin[i] >= 0 && refusedForGood(err) {
				left = append(left, w.deadLetter(&batch[origin[i]], fmt.Errorf("topic %s refused the response: %w", t, firstError(err))))
				leftOrigin = append(leftOrigin, -1)
				redirected++
				continue
			}
			if reply && errors.Is(err, kafka.UnknownTopicOrPartition) && origin[i] >= 0 {
				if w.park(&batch[origin[i]], msgs[i]) {
					parked++
					continue
				}
				cause := fmt.Errorf("reply topic %q: %w, and %d responses wait for unknown reply topics already", t, kafka.UnknownTopicOrPartition, len(w.parked))
				left = append(left, w.deadLetter(&batch[origin[i]], cause))
				leftOrigin = append(leftOrigin, -1)
				redirected++
				continue
			}
			left = append(left, msgs[i])
			leftOrigin = append(leftOrigin, origin[i])
		}
	}
	return left, leftOrigin, redirected, parked
}

// maxParked bounds the responses a partition keeps waiting for their reply
// topics; past it, such a request is dead-lettered at once.
const maxParked = 10_000

// parkedRetry spaces the attempts to write parked responses.
const parkedRetry = 200 * time.Millisecond

// parkedResponse is a response waiting for its reply topic to exist, with
// its request's dead letter for when it never does.
type parkedResponse struct {
	msg, dead kafka.Message
	offset    int64
	since     time.Time
}

// park keeps a response to a reply topic the brokers do not know, copied
// out of the batch's buffers; the partition's commits stop before its
// request (held) until it is written or, after ReplyTopicWait, its
// request is dead-lettered (retryParked). It reports false when the
// parking is full.
func (w *scoreWorker) park(r *record, m kafka.Message) bool {
	if len(w.parked) >= maxParked {
		return false
	}
	m.Key, m.Value = bytes.Clone(m.Key), bytes.Clone(m.Value)
	cause := fmt.Errorf("reply topic %q: %w for %s", m.Topic, kafka.UnknownTopicOrPartition, w.s.cfg.ReplyTopicWait)
	dead := w.deadLetter(r, cause)
	dead.Key, dead.Value = bytes.Clone(dead.Key), bytes.Clone(dead.Value)
	w.parked = append(w.parked, parkedResponse{msg: m, dead: dead, offset: r.offset, since: time.Now()})
	return true
}

// held reports the offset of the oldest request whose response is parked:
// the partition commits no further.
func (w *scoreWorker) held() (int64, bool) {
	if len(w.parked) == 0 {
		return 0, false
	}
	low := w.parked[0].offset
	for _, p := range w.parked[1:] {
		low = min(low, p.offset)
	}
	return low, true
}

// idle retries the parked responses while the partition has no records.
func (w *scoreWorker) idle(ctx context.Context) { w.retryParked(ctx) }

// retryParked writes the parked responses whose reply topics exist now,
// one topic at a time, and dead-letters the requests of those that waited
// ReplyTopicWait; the others wait on. Attempts are parkedRetry apart.
func (w *scoreWorker) retryParked(ctx context.Context) {
	if len(w.parked) == 0 || time.Since(w.lastParkedTry) < parkedRetry {
		return
	}
	w.lastParkedTry = time.Now()
	parked := w.parked
	topics, byTopic := groupByTopic(len(parked), func(i int) string { return parked[i].msg.Topic })
	keep := make([]parkedResponse, 0, len(parked))
	for _, t := range topics {
		group := make([]parkedResponse, len(byTopic[t]))
		msgs := make([]kafka.Message, len(group))
		for j, i := range byTopic[t] {
			group[j], msgs[j] = parked[i], parked[i].msg
		}
		err := w.s.out.WriteMessages(ctx, msgs...)
		if err == nil {
			w.s.scored.Add(int64(len(group)))
			continue
		}
		var waiting, expired []parkedResponse
		for _, p := range group {
			if refusedForGood(err) || errors.Is(err, kafka.UnknownTopicOrPartition) && time.Since(p.since) >= w.s.cfg.ReplyTopicWait {
				expired = append(expired, p)
			} else {
				waiting = append(waiting, p)
			}
		}
		if len(expired) > 0 {
			dead := make([]kafka.Message, len(expired))
			for i, p := range expired {
				dead[i] = p.dead
			}
			if derr := w.s.out.WriteMessages(ctx, dead...); derr != nil {
				waiting = append(waiting, expired...) // tried again next time
			} else {
				w.s.deadLetters.Add(int64(len(expired)))
				w.s.log.Info("dead letters: reply topic unknown", "partition", w.partition, "topic", t, "count", len(expired))
			}
		}
		keep = append(keep, waiting...)
	}
	w.parked = keep
}

// groupByTopic returns the indexes of n messages by topic, and the topics
// in the order they first appear.
func groupByTopic(n int, topic func(i int) string) ([]string, map[string][]int) {
	groups := map[string][]int{}
	var topics []string
	for i := range n {
		t := topic(i)
		if groups[t] == nil {
			topics = append(topics, t)
		}
		groups[t] = append(groups[t], i)
	}
	return topics, groups
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

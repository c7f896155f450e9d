// Package producers is the writing edge of the pipeline: the library event
// producers use to publish interactions, the publisher of score results,
// and the async ranking client that sends score requests and reads their
// responses.
//
//	applications → producers → [interactions], [score-requests]
//	scorer       → producers → [score-results]
//
// Every write waits for acks from all in-sync replicas; nothing is
// fire-and-forget.
package producers

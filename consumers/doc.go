// Package consumers holds the Kafka consumer-group workers of the pipeline:
// ingest reads the interactions topic and applies counts to the store;
// the scorer reads score-request topics, looks the arms up in the store,
// ranks with the sampler and hands results to a publisher.
//
//	events   → [interactions]   → consumers (ingest) → store
//	requests → [score-requests] → consumers (scorer) → sampler → producers → [score-results]
//
// Workers own one partition's state each, commit offsets only after their
// writes succeed, and send bad records to the topic's dead-letter topic. They
// depend on small interfaces defined here; cmd wires the concrete Redis, CQL
// and Kafka clients in.
package consumers

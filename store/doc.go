// Package store keeps the state the pipeline learns from events: per-arm
// reward counts and per-user interaction history, in a hot tier (Redis,
// Redis Cluster or Dragonfly) backed by a cold tier (ScyllaDB or Cassandra).
//
//	consumers (ingest) → store: hot tier ⇄ cold tier
//	consumers (scorer) ← store
//
// Writes carry the partition offset watermark they include, so a
// redelivered or replayed event never counts twice.
package store

// Package store keeps the state the pipeline learns from events: per-arm
// reward counts and per-user interaction history, in a hot tier backed by a
// cold tier.
//
//	consumers (ingest) → store.Tier: hot tier (store/hot, Redis) ⇄ cold tier (store/cold, CQL)
//	consumers (scorer) ← store.Tier, store/hot
//
// This package is the tiering: when a user's session is loaded from the
// cold tier, how events are applied to it, when it is flushed back and
// evicted (Sweeper), how the arm counts are snapshotted and restored after
// a hot-tier loss. It works through the HotTier and ColdTier interfaces, so
// it links no storage client and is tested with fakes; store/state holds
// the types every side speaks.
//
// Writes carry the partition offset watermark they include, so a
// redelivered or replayed event never counts twice.
package store

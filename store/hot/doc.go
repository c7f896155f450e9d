// Package hot is the hot tier on Redis, Redis Cluster or Dragonfly: arm
// counts with their offset watermarks, per-user sessions (recent history,
// own counts, pending events, activity), leases, recovery epochs and the
// namespace tools (diff, promote). Its Lua scripts live in lua/, one file
// each, embedded at build time; every script touches the keys of one hash
// tag only.
//
// It decides nothing about tiering: package store orders its operations
// (load, apply, offload, snapshot, recover) over it and the cold tier.
package hot

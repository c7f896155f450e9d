package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/gocql/gocql"
	"github.com/scylladb/gocqlx/v2"
	"github.com/scylladb/gocqlx/v2/qb"
	"github.com/scylladb/gocqlx/v2/table"
)

// ColdConfig configures the cold tier.
type ColdConfig struct {
	// Keyspace holds the tables; default "banditstream".
	Keyspace string
	// Replication is the keyspace's replication map in CQL, used when the
	// keyspace is created; default SimpleStrategy with factor 1. On a
	// cluster: {'class': 'NetworkTopologyStrategy', 'dc1': 3}.
	Replication string
	// HistoryLoad bounds the events loaded into the hot tier at session
	// start (the newest); default 200.
	HistoryLoad int
}

func (c *ColdConfig) setDefaults() {
	if c.Keyspace == "" {
		c.Keyspace = "banditstream"
	}
	if c.Replication == "" {
		c.Replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
	}
	if c.HistoryLoad == 0 {
		c.HistoryLoad = 200
	}
}

var identifier = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`)

// Validate reports a configuration that cannot work.
func (c ColdConfig) Validate() error {
	if !identifier.MatchString(c.Keyspace) {
		return fmt.Errorf("store: keyspace %q is not a CQL identifier", c.Keyspace)
	}
	if c.HistoryLoad < 1 {
		return errors.New("store: history load must be at least 1")
	}
	return nil
}

// migrations create the schema; each statement is idempotent, so every
// start applies them all.
func migrations(ks, replication string) []string {
	return []string{
		`CREATE KEYSPACE IF NOT EXISTS ` + ks + ` WITH replication = ` + replication,
		// One row per event, idempotent by (time, event_id): a redelivered
		// or replayed event overwrites itself.
		`CREATE TABLE IF NOT EXISTS ` + ks + `.history (
			user_id text, event_time_ms bigint, event_id text,
			item_id text, context text, type int, session_id text, value double,
			PRIMARY KEY ((user_id), event_time_ms, event_id)
		) WITH CLUSTERING ORDER BY (event_time_ms DESC, event_id ASC)`,
		// The state of an offloaded user, written with USING TIMESTAMP =
		// its version, so an older flush never overwrites a newer one.
		`CREATE TABLE IF NOT EXISTS ` + ks + `.user_state (
			user_id text PRIMARY KEY, version bigint,
			arm_counts map<text, frozen<list<bigint>>>,
			watermarks map<text, bigint>,
			flushed_ms bigint
		)`,
		// Arm-count snapshots of the hot tier: a snapshot row is written
		// last, once every shard's rows are in, so a listed snapshot is
		// complete. replay_from says, per topic/partition, where a replay
		// after restoring it must start.
		`CREATE TABLE IF NOT EXISTS ` + ks + `.snapshots (
			k int, id bigint, epoch text, shards int, taken_ms bigint,
			replay_from map<text, bigint>,
			PRIMARY KEY ((k), id)
		) WITH CLUSTERING ORDER BY (id DESC)`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.arm_snapshot (
			id bigint, shard int, arm text, counts list<bigint>,
			PRIMARY KEY ((id, shard), arm)
		)`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.arm_snapshot_shard (
			id bigint, shard int, watermarks map<text, bigint>,
			PRIMARY KEY ((id), shard)
		)`,
	}
}

// HistoryEvent is one row of a user's history.
type HistoryEvent struct {
	UserID      string  `db:"user_id"`
	EventTimeMs int64   `db:"event_time_ms"`
	EventID     string  `db:"event_id"`
	ItemID      string  `db:"item_id"`
	Context     string  `db:"context"`
	Type        int32   `db:"type"`
	SessionID   string  `db:"session_id"`
	Value       float64 `db:"value"`
}

var historyTable = table.New(table.Metadata{
	Name:    "history",
	Columns: []string{"user_id", "event_time_ms", "event_id", "item_id", "context", "type", "session_id", "value"},
	PartKey: []string{"user_id"},
	SortKey: []string{"event_time_ms", "event_id"},
})

// UserState is what the cold tier keeps of an offloaded user.
type UserState struct {
	UserID string `db:"user_id"`
	// Version counts the writes to the user's hot state, across sessions.
	Version int64 `db:"version"`
	// ArmCounts are the user's own counts per arm ("context\x1fitem"), in
	// TypeIndex order.
	ArmCounts map[string][]int64 `db:"arm_counts"`
	// Watermarks are the user's offset watermarks per "topic/partition".
	Watermarks map[string]int64 `db:"watermarks"`
	FlushedMs  int64            `db:"flushed_ms"`
}

var userStateTable = table.New(table.Metadata{
	Name:    "user_state",
	Columns: []string{"user_id", "version", "arm_counts", "watermarks", "flushed_ms"},
	PartKey: []string{"user_id"},
})

// Cold is the cold tier on ScyllaDB or Cassandra.
type Cold struct {
	session gocqlx.Session
	cfg     ColdConfig
}

// NewCold applies the migrations through session (which must not be bound
// to the keyspace, as it may not exist yet) and returns the cold tier. The
// session's keyspace-less queries name the keyspace explicitly.
func NewCold(ctx context.Context, session *gocql.Session, cfg ColdConfig) (*Cold, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if session == nil {
		return nil, errors.New("store: nil CQL session")
	}
	s := gocqlx.NewSession(session)
	for _, stmt := range migrations(cfg.Keyspace, cfg.Replication) {
		if err := s.ContextQuery(ctx, stmt, nil).ExecRelease(); err != nil {
			return nil, fmt.Errorf("applying schema (%.60s…): %w", stmt, err)
		}
	}
	return &Cold{session: s, cfg: cfg}, nil
}

func (c *Cold) qualified(t *table.Table) string { return c.cfg.Keyspace + "." + t.Name() }

// WriteHistory writes events; rewriting one is harmless.
func (c *Cold) WriteHistory(ctx context.Context, events []HistoryEvent) error {
	if len(events) == 0 {
		return nil
	}
	stmt, names := qb.Insert(c.qualified(historyTable)).Columns(historyTable.Metadata().Columns...).ToCql()
	q := c.session.ContextQuery(ctx, stmt, names).Idempotent(true)
	defer q.Release()
	for i := range events {
		if err := q.BindStruct(&events[i]).Exec(); err != nil {
			return fmt.Errorf("writing history of %s: %w", events[i].UserID, err)
		}
	}
	return nil
}

// RecentHistory returns up to limit of the user's newest events, newest
// first.
func (c *Cold) RecentHistory(ctx context.Context, user string, limit int) ([]HistoryEvent, error) {
	stmt, names := qb.Select(c.qualified(historyTable)).Where(qb.Eq("user_id")).Limit(uint(limit)).ToCql()
	var out []HistoryEvent
	if err := c.session.ContextQuery(ctx, stmt, names).Idempotent(true).BindMap(qb.M{"user_id": user}).SelectRelease(&out); err != nil {
		return nil, fmt.Errorf("reading history of %s: %w", user, err)
	}
	return out, nil
}

// WriteUserState writes an offloaded user's state, with the version as the
// write timestamp: of two flushes, the newer version wins whatever their
// order of arrival.
func (c *Cold) WriteUserState(ctx context.Context, st UserState) error {
	stmt, names := qb.Insert(c.qualified(userStateTable)).Columns(userStateTable.Metadata().Columns...).TimestampNamed("ts").ToCql()
	q := c.session.ContextQuery(ctx, stmt, names).Idempotent(true).
		BindStructMap(&st, qb.M{"ts": st.Version + 1})
	if err := q.ExecRelease(); err != nil {
		return fmt.Errorf("writing state of %s: %w", st.UserID, err)
	}
	return nil
}

// ReadUserState returns a user's offloaded state, or ErrNotFound.
func (c *Cold) ReadUserState(ctx context.Context, user string) (UserState, error) {
	stmt, names := qb.Select(c.qualified(userStateTable)).Columns(userStateTable.Metadata().Columns...).Where(qb.Eq("user_id")).ToCql()
	var st UserState
	err := c.session.ContextQuery(ctx, stmt, names).Idempotent(true).BindMap(qb.M{"user_id": user}).GetRelease(&st)
	if errors.Is(err, gocql.ErrNotFound) {
		return UserState{}, ErrNotFound
	}
	if err != nil {
		return UserState{}, fmt.Errorf("reading state of %s: %w", user, err)
	}
	return st, nil
}

// Snapshot describes a complete arm-count snapshot.
type Snapshot struct {
	ID         int64            `db:"id"`
	Epoch      string           `db:"epoch"`
	Shards     int              `db:"shards"`
	TakenMs    int64            `db:"taken_ms"`
	ReplayFrom map[string]int64 `db:"replay_from"`
}

// ShardSnapshot is one shard of a snapshot: its watermarks and its arms'
// counts ("context\x1fitem" → five counts and the last event time).
type ShardSnapshot struct {
	Shard      int
	Watermarks map[string]int64
	Arms       map[string][]int64
}

// WriteShardSnapshot writes one shard of snapshot id. All of a shard's
// rows share a partition, so they go in unlogged batches of 100.
func (c *Cold) WriteShardSnapshot(ctx context.Context, id int64, sh ShardSnapshot) error {
	stmt := `INSERT INTO ` + c.cfg.Keyspace + `.arm_snapshot (id, shard, arm, counts) VALUES (?, ?, ?, ?)`
	batch := c.session.Batch(gocql.UnloggedBatch).WithContext(ctx)
	flush := func() error {
		if batch.Size() == 0 {
			return nil
		}
		err := c.session.ExecuteBatch(batch)
		batch = c.session.Batch(gocql.UnloggedBatch).WithContext(ctx)
		return err
	}
	for arm, counts := range sh.Arms {
		batch.Query(stmt, id, sh.Shard, arm, counts)
		if batch.Size() >= 100 {
			if err := flush(); err != nil {
				return fmt.Errorf("writing snapshot %d shard %d: %w", id, sh.Shard, err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("writing snapshot %d shard %d: %w", id, sh.Shard, err)
	}
	err := c.session.ContextQuery(ctx, `INSERT INTO `+c.cfg.Keyspace+`.arm_snapshot_shard (id, shard, watermarks) VALUES (?, ?, ?)`, nil).
		Idempotent(true).Bind(id, sh.Shard, sh.Watermarks).ExecRelease()
	if err != nil {
		return fmt.Errorf("writing snapshot %d shard %d: %w", id, sh.Shard, err)
	}
	return nil
}

// CompleteSnapshot lists snapshot s, whose shards are all written.
func (c *Cold) CompleteSnapshot(ctx context.Context, s Snapshot) error {
	err := c.session.ContextQuery(ctx, `INSERT INTO `+c.cfg.Keyspace+`.snapshots (k, id, epoch, shards, taken_ms, replay_from) VALUES (0, ?, ?, ?, ?, ?)`, nil).
		Idempotent(true).Bind(s.ID, s.Epoch, s.Shards, s.TakenMs, s.ReplayFrom).ExecRelease()
	if err != nil {
		return fmt.Errorf("completing snapshot %d: %w", s.ID, err)
	}
	return nil
}

// LatestSnapshot returns the newest complete snapshot, or ErrNotFound.
func (c *Cold) LatestSnapshot(ctx context.Context) (Snapshot, error) {
	var s Snapshot
	err := c.session.ContextQuery(ctx, `SELECT id, epoch, shards, taken_ms, replay_from FROM `+c.cfg.Keyspace+`.snapshots WHERE k = 0 LIMIT 1`, nil).
		Idempotent(true).GetRelease(&s)
	if errors.Is(err, gocql.ErrNotFound) {
		return Snapshot{}, ErrNotFound
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading the latest snapshot: %w", err)
	}
	return s, nil
}

// ReadShardSnapshot reads one shard of snapshot id.
func (c *Cold) ReadShardSnapshot(ctx context.Context, id int64, shard int) (ShardSnapshot, error) {
	sh := ShardSnapshot{Shard: shard, Arms: map[string][]int64{}}
	err := c.session.ContextQuery(ctx, `SELECT watermarks FROM `+c.cfg.Keyspace+`.arm_snapshot_shard WHERE id = ? AND shard = ?`, nil).
		Idempotent(true).Bind(id, shard).GetRelease(&sh.Watermarks)
	if err != nil {
		return sh, fmt.Errorf("reading snapshot %d shard %d: %w", id, shard, err)
	}
	iter := c.session.ContextQuery(ctx, `SELECT arm, counts FROM `+c.cfg.Keyspace+`.arm_snapshot WHERE id = ? AND shard = ?`, nil).
		Idempotent(true).Bind(id, shard).Iter()
	var arm string
	var counts []int64
	for iter.Scan(&arm, &counts) {
		sh.Arms[arm] = counts
		counts = nil
	}
	if err := iter.Close(); err != nil {
		return sh, fmt.Errorf("reading snapshot %d shard %d: %w", id, shard, err)
	}
	return sh, nil
}

// ErrNotFound means the cold tier holds nothing for the key.
var ErrNotFound = errors.New("store: not found")

// Ping checks that the cold tier answers.
func (c *Cold) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v string
	return c.session.ContextQuery(ctx, "SELECT release_version FROM system.local", nil).Get(&v)
}

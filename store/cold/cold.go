// Package cold is the cold tier on ScyllaDB or Cassandra (gocql and
// gocqlx): users' history and offloaded state, and the hot tier's arm-count
// snapshots. Its schema is applied by Migrate, an explicit step.
package cold

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/banditstream/banditstream/store/state"
	"github.com/gocql/gocql"
	"github.com/scylladb/gocqlx/v2"
	"github.com/scylladb/gocqlx/v2/qb"
	"github.com/scylladb/gocqlx/v2/table"
	"golang.org/x/sync/errgroup"
)

// DefaultReplication is the keyspace's replication when none is given:
// one copy, for a single node.
const DefaultReplication = "{'class': 'SimpleStrategy', 'replication_factor': 1}"

// Config configures the cold tier.
type Config struct {
	// Keyspace holds the tables; default "banditstream".
	Keyspace string
	// Namespace scopes the offloaded user states and the snapshots: the
	// hot tier's key prefix they belong to, so that several namespaces
	// (the live one, shadows) share a keyspace without reading each
	// other's. Default "bs", the hot tier's default prefix. A user's
	// history is shared: its rows are the events themselves.
	Namespace string
	// Replication is the keyspace's replication map in CQL, used when the
	// keyspace is created; default SimpleStrategy with factor 1. On a
	// cluster: {'class': 'NetworkTopologyStrategy', 'dc1': 3}.
	Replication string
	// HistoryLoad bounds the events loaded into the hot tier at session
	// start (the newest); default 200.
	HistoryLoad int
	// HistoryRetention is how long a history event is kept (the rows'
	// TTL), at most MaxTTL; 0 keeps events for ever. Default none: a
	// program sets it (the binaries' -cql-history-retention, default
	// DefaultHistoryRetention).
	HistoryRetention time.Duration
}

// DefaultHistoryRetention is the binaries' default history retention.
const DefaultHistoryRetention = 180 * 24 * time.Hour

// MaxTTL is the largest TTL CQL accepts, 20 years.
const MaxTTL = 630_720_000 * time.Second

func (c *Config) setDefaults() {
	if c.Keyspace == "" {
		c.Keyspace = "banditstream"
	}
	if c.Namespace == "" {
		c.Namespace = "bs"
	}
	if c.Replication == "" {
		c.Replication = DefaultReplication
	}
	if c.HistoryLoad == 0 {
		c.HistoryLoad = 200
	}
}

var identifier = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`)

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if !identifier.MatchString(c.Keyspace) {
		return fmt.Errorf("store: keyspace %q is not a CQL identifier", c.Keyspace)
	}
	if c.Namespace == "" || len(c.Namespace) > 256 {
		return errors.New("store: the cold tier's namespace must be 1 to 256 bytes")
	}
	if c.HistoryLoad < 1 {
		return errors.New("store: history load must be at least 1")
	}
	if c.HistoryRetention < 0 || c.HistoryRetention > MaxTTL {
		return fmt.Errorf("store: history retention must be between 0 and %s", MaxTTL)
	}
	return nil
}

// migrations create the schema; each statement is idempotent.
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
		// The state of an offloaded user in a namespace, written with
		// USING TIMESTAMP = its version, so an older flush never overwrites
		// a newer one; dedup is the user's deduplication window.
		`CREATE TABLE IF NOT EXISTS ` + ks + `.user_states (
			ns text, user_id text, version bigint,
			arm_counts map<text, frozen<list<bigint>>>,
			watermarks map<text, bigint>,
			dedup blob,
			flushed_ms bigint,
			PRIMARY KEY ((ns, user_id))
		)`,
		// Arm-count snapshots of a namespace's hot tier: a snapshot row is
		// written last, once every shard's rows are in, so a listed
		// snapshot is complete. replay_from says, per topic/partition,
		// where a replay after restoring it must start. Ids come from
		// snapshot_ids, a compare-and-set sequence per namespace, so the
		// newest id is the latest snapshot whatever the clocks say.
		`CREATE TABLE IF NOT EXISTS ` + ks + `.ns_snapshots (
			ns text, id bigint, epoch text, shards int, taken_ms bigint,
			replay_from map<text, bigint>,
			PRIMARY KEY ((ns), id)
		) WITH CLUSTERING ORDER BY (id DESC)`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.ns_arm_snapshot (
			ns text, id bigint, shard int, arm text, counts list<bigint>,
			PRIMARY KEY ((ns, id, shard), arm)
		)`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.ns_arm_snapshot_shard (
			ns text, id bigint, shard int, watermarks map<text, bigint>,
			PRIMARY KEY ((ns, id), shard)
		)`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.snapshot_ids (ns text PRIMARY KEY, last bigint)`,
	}
}

// historyRow is one row of a user's history.
type historyRow struct {
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

// userStateRow is one row of user_states.
type userStateRow struct {
	NS         string             `db:"ns"`
	UserID     string             `db:"user_id"`
	Version    int64              `db:"version"`
	ArmCounts  map[string][]int64 `db:"arm_counts"`
	Watermarks map[string]int64   `db:"watermarks"`
	Dedup      []byte             `db:"dedup"`
	FlushedMs  int64              `db:"flushed_ms"`
}

var userStateTable = table.New(table.Metadata{
	Name:    "user_states",
	Columns: []string{"ns", "user_id", "version", "arm_counts", "watermarks", "dedup", "flushed_ms"},
	PartKey: []string{"ns", "user_id"},
})

// Cold is the cold tier on ScyllaDB or Cassandra.
type Cold struct {
	session gocqlx.Session
	cfg     Config
}

// New returns the cold tier on session, which need not be bound to the
// keyspace: every query names it. The schema must exist: apply it with
// Migrate first (bandit-stack migrate, or a daemon started with -migrate).
func New(session *gocql.Session, cfg Config) (*Cold, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if session == nil {
		return nil, errors.New("store: nil CQL session")
	}
	return &Cold{session: gocqlx.NewSession(session), cfg: cfg}, nil
}

// Migrate creates the keyspace and tables the cold tier needs, through
// session (which must not be bound to the keyspace, as it may not exist
// yet). Every statement is idempotent: running it again changes nothing.
func Migrate(ctx context.Context, session *gocql.Session, cfg Config) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if session == nil {
		return errors.New("store: nil CQL session")
	}
	s := gocqlx.NewSession(session)
	for _, stmt := range migrations(cfg.Keyspace, cfg.Replication) {
		if err := s.ContextQuery(ctx, stmt, nil).ExecRelease(); err != nil {
			return fmt.Errorf("applying schema (%.60s…): %w", stmt, err)
		}
	}
	return nil
}

func (c *Cold) qualified(t *table.Table) string { return c.cfg.Keyspace + "." + t.Name() }

// refusedForGood reports a CQL error that a retry of the same statement
// cannot change: a request past the server's size limit, an invalid or
// unauthorised statement, a keyspace or table that is not there. Those
// depending on the operator (a grant, the schema) go away once fixed, so
// the writes are still tried again; the error says the cold tier refuses.
func refusedForGood(err error) bool {
	var re gocql.RequestError
	if !errors.As(err, &re) {
		return false
	}
	switch re.Code() {
	case gocql.ErrCodeSyntax, gocql.ErrCodeUnauthorized, gocql.ErrCodeInvalid, gocql.ErrCodeConfig, gocql.ErrCodeCredentials:
		return true
	case gocql.ErrCodeProtocol:
		// "Request is too big: length … exceeds maximum allowed length".
		return strings.Contains(re.Message(), "too big")
	}
	return false
}

// classify wraps a write's error with state.ErrRefused when the cold tier
// refuses it for good.
func classify(err error) error {
	if err != nil && refusedForGood(err) {
		return fmt.Errorf("%w: %w", state.ErrRefused, err)
	}
	return err
}

// historyWriters bounds the history rows one WriteHistory has in flight.
const historyWriters = 16

// WriteHistory writes events, up to historyWriters rows at a time;
// rewriting one is harmless.
func (c *Cold) WriteHistory(ctx context.Context, events []state.HistoryEvent) error {
	if len(events) == 0 {
		return nil
	}
	insert := qb.Insert(c.qualified(historyTable)).Columns(historyTable.Metadata().Columns...)
	if c.cfg.HistoryRetention > 0 {
		insert = insert.TTL(c.cfg.HistoryRetention)
	}
	stmt, names := insert.ToCql()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(historyWriters)
	for i := range events {
		g.Go(func() error {
			row := historyRow(events[i])
			if err := c.session.ContextQuery(ctx, stmt, names).Idempotent(true).BindStruct(&row).ExecRelease(); err != nil {
				return fmt.Errorf("writing history of %s: %w", events[i].UserID, classify(err))
			}
			return nil
		})
	}
	return g.Wait()
}

// RecentHistory returns up to limit of the user's newest events, newest
// first.
func (c *Cold) RecentHistory(ctx context.Context, user string, limit int) ([]state.HistoryEvent, error) {
	stmt, names := qb.Select(c.qualified(historyTable)).Where(qb.Eq("user_id")).Limit(uint(limit)).ToCql()
	var rows []historyRow
	if err := c.session.ContextQuery(ctx, stmt, names).Idempotent(true).BindMap(qb.M{"user_id": user}).SelectRelease(&rows); err != nil {
		return nil, fmt.Errorf("reading history of %s: %w", user, err)
	}
	out := make([]state.HistoryEvent, len(rows))
	for i, r := range rows {
		out[i] = state.HistoryEvent(r)
	}
	return out, nil
}

// WriteUserState writes an offloaded user's state, with the version as the
// write timestamp: of two flushes, the newer version wins whatever their
// order of arrival.
func (c *Cold) WriteUserState(ctx context.Context, st state.UserState) error {
	stmt, names := qb.Insert(c.qualified(userStateTable)).Columns(userStateTable.Metadata().Columns...).TimestampNamed("ts").ToCql()
	row := userStateRow{NS: c.cfg.Namespace, UserID: st.UserID, Version: st.Version, ArmCounts: st.ArmCounts,
		Watermarks: st.Watermarks, Dedup: st.Dedup, FlushedMs: st.FlushedMs}
	q := c.session.ContextQuery(ctx, stmt, names).Idempotent(true).
		BindStructMap(&row, qb.M{"ts": st.Version + 1})
	if err := q.ExecRelease(); err != nil {
		return fmt.Errorf("writing state of %s: %w", st.UserID, classify(err))
	}
	return nil
}

// ReadUserState returns a user's offloaded state, or ErrNotFound.
func (c *Cold) ReadUserState(ctx context.Context, user string) (state.UserState, error) {
	stmt, names := qb.Select(c.qualified(userStateTable)).Columns(userStateTable.Metadata().Columns...).Where(qb.Eq("ns"), qb.Eq("user_id")).ToCql()
	var row userStateRow
	err := c.session.ContextQuery(ctx, stmt, names).Idempotent(true).BindMap(qb.M{"ns": c.cfg.Namespace, "user_id": user}).GetRelease(&row)
	if errors.Is(err, gocql.ErrNotFound) {
		return state.UserState{}, state.ErrNotFound
	}
	if err != nil {
		return state.UserState{}, fmt.Errorf("reading state of %s: %w", user, err)
	}
	return state.UserState{UserID: row.UserID, Version: row.Version, ArmCounts: row.ArmCounts, Watermarks: row.Watermarks,
		Dedup: row.Dedup, FlushedMs: row.FlushedMs}, nil
}

// snapshotRow is one row of snapshots.
type snapshotRow struct {
	ID         int64            `db:"id"`
	Epoch      string           `db:"epoch"`
	Shards     int              `db:"shards"`
	TakenMs    int64            `db:"taken_ms"`
	ReplayFrom map[string]int64 `db:"replay_from"`
}

// WriteShardSnapshot writes one shard of snapshot id. All of a shard's
// rows share a partition, so they go in unlogged batches of 100.
func (c *Cold) WriteShardSnapshot(ctx context.Context, id int64, sh state.ShardSnapshot) error {
	stmt := `INSERT INTO ` + c.cfg.Keyspace + `.ns_arm_snapshot (ns, id, shard, arm, counts) VALUES (?, ?, ?, ?, ?)`
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
		batch.Query(stmt, c.cfg.Namespace, id, sh.Shard, arm, counts)
		if batch.Size() >= 100 {
			if err := flush(); err != nil {
				return fmt.Errorf("writing snapshot %d shard %d: %w", id, sh.Shard, err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("writing snapshot %d shard %d: %w", id, sh.Shard, err)
	}
	err := c.session.ContextQuery(ctx, `INSERT INTO `+c.cfg.Keyspace+`.ns_arm_snapshot_shard (ns, id, shard, watermarks) VALUES (?, ?, ?, ?)`, nil).
		Idempotent(true).Bind(c.cfg.Namespace, id, sh.Shard, sh.Watermarks).ExecRelease()
	if err != nil {
		return fmt.Errorf("writing snapshot %d shard %d: %w", id, sh.Shard, err)
	}
	return nil
}

// CompleteSnapshot lists snapshot s, whose shards are all written.
func (c *Cold) CompleteSnapshot(ctx context.Context, s state.Snapshot) error {
	err := c.session.ContextQuery(ctx, `INSERT INTO `+c.cfg.Keyspace+`.ns_snapshots (ns, id, epoch, shards, taken_ms, replay_from) VALUES (?, ?, ?, ?, ?, ?)`, nil).
		Idempotent(true).Bind(c.cfg.Namespace, s.ID, s.Epoch, s.Shards, s.TakenMs, s.ReplayFrom).ExecRelease()
	if err != nil {
		return fmt.Errorf("completing snapshot %d: %w", s.ID, err)
	}
	return nil
}

// LatestSnapshot returns the newest complete snapshot, or ErrNotFound.
func (c *Cold) LatestSnapshot(ctx context.Context) (state.Snapshot, error) {
	var s snapshotRow
	err := c.session.ContextQuery(ctx, `SELECT id, epoch, shards, taken_ms, replay_from FROM `+c.cfg.Keyspace+`.ns_snapshots WHERE ns = ? LIMIT 1`, nil).
		Idempotent(true).Bind(c.cfg.Namespace).GetRelease(&s)
	if errors.Is(err, gocql.ErrNotFound) {
		return state.Snapshot{}, state.ErrNotFound
	}
	if err != nil {
		return state.Snapshot{}, fmt.Errorf("reading the latest snapshot: %w", err)
	}
	return state.Snapshot(s), nil
}

// PruneSnapshots deletes every snapshot but the newest keep complete ones,
// and the shards of snapshots never completed (a snapshotter that died
// half-way) older than the newest complete one. Call it under the snapshot
// lock, so that no snapshot is being written. It returns how many
// snapshots it deleted.
func (c *Cold) PruneSnapshots(ctx context.Context, keep int) (int, error) {
	ks := c.cfg.Keyspace
	ns := c.cfg.Namespace
	iter := c.session.ContextQuery(ctx, `SELECT id, shards FROM `+ks+`.ns_snapshots WHERE ns = ?`, nil).Idempotent(true).Bind(ns).Iter()
	listed := map[int64]bool{}
	var old []snapshotRow
	var newest int64
	var row snapshotRow
	for n := 0; iter.Scan(&row.ID, &row.Shards); n++ {
		listed[row.ID] = true
		if n == 0 {
			newest = row.ID
		}
		if n >= keep {
			old = append(old, row)
		}
	}
	if err := iter.Close(); err != nil {
		return 0, fmt.Errorf("listing snapshots: %w", err)
	}
	if len(listed) == 0 {
		return 0, nil
	}
	// Shards of snapshots never listed: their ids from the shard table.
	iter = c.session.ContextQuery(ctx, `SELECT DISTINCT ns, id FROM `+ks+`.ns_arm_snapshot_shard`, nil).Idempotent(true).Iter()
	var id int64
	var owner string
	var orphans []int64
	for iter.Scan(&owner, &id) {
		if owner == ns && !listed[id] && id < newest {
			orphans = append(orphans, id)
		}
	}
	if err := iter.Close(); err != nil {
		return 0, fmt.Errorf("listing snapshot shards: %w", err)
	}
	for _, id := range orphans {
		if err := c.deleteSnapshot(ctx, id, -1); err != nil {
			return 0, err
		}
	}
	for i, s := range old {
		if err := c.deleteSnapshot(ctx, s.ID, s.Shards); err != nil {
			return i, err
		}
	}
	return len(old), nil
}

// deleteSnapshot deletes snapshot id: its row first, so that it is no
// longer listed, then the arms of its shards (shards of them; -1: those the
// shard table lists), then its shard rows, last because they say where the
// arms are: one deletion cut short leaves an unlisted snapshot's shards,
// deleted as an orphan's next time.
func (c *Cold) deleteSnapshot(ctx context.Context, id int64, shards int) error {
	ks, ns := c.cfg.Keyspace, c.cfg.Namespace
	exec := func(q string, args ...any) error {
		if err := c.session.ContextQuery(ctx, q, nil).Idempotent(true).Bind(append([]any{ns}, args...)...).ExecRelease(); err != nil {
			return fmt.Errorf("deleting snapshot %d: %w", id, err)
		}
		return nil
	}
	if err := exec(`DELETE FROM `+ks+`.ns_snapshots WHERE ns = ? AND id = ?`, id); err != nil {
		return err
	}
	var list []int
	if shards < 0 {
		iter := c.session.ContextQuery(ctx, `SELECT shard FROM `+ks+`.ns_arm_snapshot_shard WHERE ns = ? AND id = ?`, nil).Idempotent(true).Bind(ns, id).Iter()
		var sh int
		for iter.Scan(&sh) {
			list = append(list, sh)
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("listing the shards of snapshot %d: %w", id, err)
		}
	} else {
		for sh := range shards {
			list = append(list, sh)
		}
	}
	for _, sh := range list {
		if err := exec(`DELETE FROM `+ks+`.ns_arm_snapshot WHERE ns = ? AND id = ? AND shard = ?`, id, sh); err != nil {
			return err
		}
	}
	return exec(`DELETE FROM `+ks+`.ns_arm_snapshot_shard WHERE ns = ? AND id = ?`, id)
}

// ReadShardSnapshot reads one shard of snapshot id.
func (c *Cold) ReadShardSnapshot(ctx context.Context, id int64, shard int) (state.ShardSnapshot, error) {
	sh := state.ShardSnapshot{Shard: shard, Arms: map[string][]int64{}}
	err := c.session.ContextQuery(ctx, `SELECT watermarks FROM `+c.cfg.Keyspace+`.ns_arm_snapshot_shard WHERE ns = ? AND id = ? AND shard = ?`, nil).
		Idempotent(true).Bind(c.cfg.Namespace, id, shard).GetRelease(&sh.Watermarks)
	if err != nil {
		return sh, fmt.Errorf("reading snapshot %d shard %d: %w", id, shard, err)
	}
	iter := c.session.ContextQuery(ctx, `SELECT arm, counts FROM `+c.cfg.Keyspace+`.ns_arm_snapshot WHERE ns = ? AND id = ? AND shard = ?`, nil).
		Idempotent(true).Bind(c.cfg.Namespace, id, shard).Iter()
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

// NextSnapshotID returns a new snapshot id of the namespace, greater than
// every one returned before: a compare-and-set on the namespace's sequence
// (a lightweight transaction), so neither a clock running ahead nor two
// snapshotters make an older snapshot the latest.
func (c *Cold) NextSnapshotID(ctx context.Context) (int64, error) {
	ks, ns := c.cfg.Keyspace, c.cfg.Namespace
	for attempt := 0; attempt < 20; attempt++ {
		var last int64
		err := c.session.ContextQuery(ctx, `SELECT last FROM `+ks+`.snapshot_ids WHERE ns = ?`, nil).
			Consistency(gocql.Serial).Bind(ns).GetRelease(&last)
		var applied bool
		switch {
		case errors.Is(err, gocql.ErrNotFound):
			applied, err = c.session.Session.Query(`INSERT INTO `+ks+`.snapshot_ids (ns, last) VALUES (?, 1) IF NOT EXISTS`, ns).
				WithContext(ctx).MapScanCAS(map[string]any{})
			last = 0
		case err == nil:
			applied, err = c.session.Session.Query(`UPDATE `+ks+`.snapshot_ids SET last = ? WHERE ns = ? IF last = ?`, last+1, ns, last).
				WithContext(ctx).MapScanCAS(map[string]any{})
		}
		if err != nil {
			return 0, fmt.Errorf("allocating a snapshot id: %w", err)
		}
		if applied {
			return last + 1, nil
		}
	}
	return 0, errors.New("allocating a snapshot id: too many concurrent allocations")
}

// Namespace is the namespace of the user states and snapshots.
func (c *Cold) Namespace() string { return c.cfg.Namespace }

// Keyspace is the keyspace of the cold tier's tables.
func (c *Cold) Keyspace() string { return c.cfg.Keyspace }

// Ping checks that the cold tier answers.
func (c *Cold) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v string
	return c.session.ContextQuery(ctx, "SELECT release_version FROM system.local", nil).Get(&v)
}

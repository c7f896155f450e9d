package local_test

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/scylladb/gocqlx/v2"
	"github.com/scylladb/gocqlx/v2/qb"
	"github.com/scylladb/gocqlx/v2/table"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
)

type historyRow struct {
	UserID      string `db:"user_id"`
	EventTimeMs int64  `db:"event_time_ms"`
	EventID     string `db:"event_id"`
	ItemID      string `db:"item_id"`
	Type        int32  `db:"type"`
}

var historyTable = table.New(table.Metadata{
	Name:    "history",
	Columns: []string{"user_id", "event_time_ms", "event_id", "item_id", "type"},
	PartKey: []string{"user_id"},
	SortKey: []string{"event_time_ms", "event_id"},
})

// Keyspace and table creation is idempotent, inserts are idempotent by
// primary key, and prepared statements read back what was written.
func TestCQLSchemaInsertSelect(t *testing.T) {
	cluster := stacktest.CQLCluster(t)
	cluster.Consistency = gocql.LocalQuorum
	cluster.DisableInitialHostLookup = true
	admin, err := gocqlx.WrapSession(cluster.CreateSession())
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ks := stacktest.UniqueName("it")
	ddl := []string{
		`CREATE KEYSPACE IF NOT EXISTS ` + ks + ` WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.history (user_id text, event_time_ms bigint, event_id text, item_id text, type int,
			PRIMARY KEY ((user_id), event_time_ms, event_id)) WITH CLUSTERING ORDER BY (event_time_ms DESC, event_id ASC)`,
	}
	// Twice: a second start-up must not fail on existing schema.
	for round := 0; round < 2; round++ {
		for _, stmt := range ddl {
			if err := admin.ContextQuery(ctx, stmt, nil).ExecRelease(); err != nil {
				t.Fatalf("round %d: %s: %v", round, stmt, err)
			}
		}
	}
	t.Cleanup(func() { _ = admin.ExecStmt(`DROP KEYSPACE IF EXISTS ` + ks) })

	cluster.Keyspace = ks
	session, err := gocqlx.WrapSession(cluster.CreateSession())
	if err != nil {
		t.Fatalf("connecting to %s: %v", ks, err)
	}
	defer session.Close()

	rows := []historyRow{
		{"u-1", 1000, "e-1", "sku-1", 1},
		{"u-1", 2000, "e-2", "sku-2", 2},
		{"u-1", 3000, "e-3", "sku-1", 5},
		{"u-2", 1500, "e-4", "sku-9", 1},
	}
	insert := historyTable.InsertQueryContext(ctx, session)
	defer insert.Release()
	for round := 0; round < 2; round++ { // the second round is a redelivery
		for _, r := range rows {
			if err := insert.Idempotent(true).BindStruct(r).Exec(); err != nil {
				t.Fatalf("insert %v: %v", r, err)
			}
		}
	}

	var got []historyRow
	sel := historyTable.SelectQueryContext(ctx, session)
	if err := sel.BindMap(qb.M{"user_id": "u-1"}).SelectRelease(&got); err != nil {
		t.Fatalf("select: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d rows for u-1, want 3 (inserts must be idempotent): %+v", len(got), got)
	}
	if !sort.SliceIsSorted(got, func(i, j int) bool { return got[i].EventTimeMs > got[j].EventTimeMs }) {
		t.Errorf("rows not in clustering order (newest first): %+v", got)
	}
	if got[0] != rows[2] {
		t.Errorf("newest row = %+v, want %+v", got[0], rows[2])
	}

	// A hand-written prepared statement with bound values.
	var count int64
	q := session.Session.Query(`SELECT COUNT(*) FROM history WHERE user_id = ? AND event_time_ms >= ?`, "u-1", int64(2000)).WithContext(ctx)
	if err := q.Scan(&count); err != nil || count != 2 {
		t.Fatalf("count since 2000 = %d, %v; want 2", count, err)
	}
	// Absent partitions read as not-found, which the store edge translates.
	var one historyRow
	err = historyTable.GetQueryContext(ctx, session).BindMap(qb.M{"user_id": "nobody", "event_time_ms": int64(1), "event_id": "x"}).GetRelease(&one)
	if !errors.Is(err, gocql.ErrNotFound) {
		t.Fatalf("get of a missing row: %v, want gocql.ErrNotFound", err)
	}
}

package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"stellaops.org/authority/host/store/postgres"
)

func TestMigrationsEmbedded(t *testing.T) {
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 || ms[0].Name != "authority_tokens" {
		t.Fatalf("unexpected migrations: %+v", ms)
	}
}

func TestMigrateFreshSchemaThenNoOp(t *testing.T) {
	dsn, schema := freshSchema(t)
	ctx := context.Background()
	all, _ := postgres.Migrations()

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	st, err := postgres.MigrationStatus(ctx, conn, schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Applied {
			t.Fatalf("fresh schema reports %04d applied", s.Version)
		}
	}

	applied, err := postgres.MigrateDSN(ctx, dsn, schema)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(all) {
		t.Fatalf("first Migrate applied %d, want %d", len(applied), len(all))
	}
	var version int
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM "+pgx.Identifier{schema, postgres.MigrationsTable}.Sanitize()).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != len(all) {
		t.Fatalf("schema at version %d, want %d", version, len(all))
	}
	st, err = postgres.MigrationStatus(ctx, conn, schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !s.Applied || s.AppliedAt.IsZero() {
			t.Fatalf("after Migrate, %04d not reported applied: %+v", s.Version, s)
		}
	}

	again, err := postgres.Migrate(ctx, conn, schema)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Migrate = %d applied, %v; want 0, nil", len(again), err)
	}

	// The rollout plan's authority_tokens.senderCertificate is this column.
	var cols []string
	rows, err := conn.Query(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = 'authority_tokens'`, schema)
	if err != nil {
		t.Fatal(err)
	}
	if cols, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"sender_certificate": false, "key_thumbprint": false, "parent_id": false, "expires_at": false}
	for _, c := range cols {
		if _, ok := want[c]; ok {
			want[c] = true
		}
	}
	for c, ok := range want {
		if !ok {
			t.Errorf("authority_tokens lacks column %s", c)
		}
	}
}

func TestMigrateConcurrentNodes(t *testing.T) {
	dsn, schema := freshSchema(t)
	ctx := context.Background()
	const nodes = 4
	var wg sync.WaitGroup
	counts := make([]int, nodes)
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied, err := postgres.MigrateDSN(ctx, dsn, schema)
			counts[i], errs[i] = len(applied), err
		}()
	}
	wg.Wait()
	all, _ := postgres.Migrations()
	total := 0
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		total += counts[i]
	}
	if total != len(all) {
		t.Fatalf("nodes applied %d migrations in total, want exactly %d", total, len(all))
	}
}

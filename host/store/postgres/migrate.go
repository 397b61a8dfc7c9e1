package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// MigrationsTable records which migrations a schema has had applied.
const MigrationsTable = "authority_schema_migrations"

// Migration is one embedded, versioned schema change
// (migrations/NNNN_name.sql). Versions start at 1 and have no gaps.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// MigrationState is a Migration and whether, and when, a schema had it applied.
type MigrationState struct {
	Migration
	Applied   bool
	AppliedAt time.Time // zero unless Applied
}

// TxBeginner is what Migrate needs from a database handle; *pgxpool.Pool,
// *pgx.Conn and pgx.Tx all satisfy it.
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

var (
	migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)
	schemaName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
)

// Migrations returns the embedded migrations in version order. It fails if a
// file is misnamed or the versions are not 1..N without gaps, which a test
// checks so that a bad file never ships.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("postgres: migration file %q: name must be NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: m[2], SQL: string(b)})
	}
	if len(ms) == 0 {
		return nil, errNoMigrations
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("postgres: migration versions must be 1..N without gaps; found %04d at position %d", m.Version, i+1)
		}
	}
	return ms, nil
}

// checkSchema accepts "" (use the connection's current schema) or a plain
// identifier.
func checkSchema(schema string) error {
	if schema != "" && !schemaName.MatchString(schema) {
		return fmt.Errorf("postgres: schema %q: must match %s", schema, schemaName)
	}
	return nil
}

// Migrate brings schema ("" means the connection's current schema) up to the
// latest embedded migration and returns the migrations it applied (none if
// the schema was already current). It creates the schema if absent.
//
// Everything happens in one transaction holding a transaction-scoped advisory
// lock derived from the schema name, so nodes starting together serialize:
// the first applies, the others wait, then see the recorded versions and
// apply nothing. A failing migration rolls back the whole run. Versions
// recorded in the database but unknown to this binary (a newer node migrated
// first) are left alone.
func Migrate(ctx context.Context, db TxBeginner, schema string) ([]Migration, error) {
	if err := checkSchema(schema); err != nil {
		return nil, err
	}
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit

	if schema == "" {
		if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return nil, fmt.Errorf("postgres: migrate: current schema: %w", err)
		}
	}
	// Pool connections carry the per-request statement_timeout and
	// lock_timeout (see Options.RequestTimeout); a migration may rightly
	// take longer, bounded by ctx instead.
	if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0`); err != nil {
		return nil, fmt.Errorf("postgres: migrate: statement_timeout: %w", err)
	}
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = 0`); err != nil {
		return nil, fmt.Errorf("postgres: migrate: lock_timeout: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('stellaops.authority.migrate/' || $1, 0))`, schema); err != nil {
		return nil, fmt.Errorf("postgres: migrate: advisory lock: %w", err)
	}
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+ident); err != nil {
		return nil, fmt.Errorf("postgres: migrate: create schema %s: %w", ident, err)
	}
	if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident); err != nil {
		return nil, fmt.Errorf("postgres: migrate: search_path: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+MigrationsTable+` (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("postgres: migrate: create %s: %w", MigrationsTable, err)
	}
	done, err := appliedVersions(ctx, tx)
	if err != nil {
		return nil, err
	}
	var applied []Migration
	for _, m := range ms {
		if _, ok := done[m.Version]; ok {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("postgres: migration %04d_%s: %w", m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+MigrationsTable+` (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return nil, fmt.Errorf("postgres: migration %04d_%s: record: %w", m.Version, m.Name, err)
		}
		applied = append(applied, m)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres: migrate: commit: %w", err)
	}
	return applied, nil
}

// MigrateDSN is Migrate over a short-lived connection to dsn.
func MigrateDSN(ctx context.Context, dsn, schema string) ([]Migration, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return Migrate(ctx, conn, schema)
}

func appliedVersions(ctx context.Context, tx pgx.Tx) (map[int]time.Time, error) {
	rows, err := tx.Query(ctx, `SELECT version, applied_at FROM `+MigrationsTable)
	if err != nil {
		return nil, fmt.Errorf("postgres: read %s: %w", MigrationsTable, err)
	}
	done := make(map[int]time.Time)
	var v int
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&v, &at}, func() error {
		done[v] = at.UTC()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: read %s: %w", MigrationsTable, err)
	}
	return done, nil
}

// MigrationStatus reports, for every embedded migration, whether schema (""
// means the current schema) has it applied. It changes nothing; a schema
// that does not exist yet reports every migration pending.
func MigrationStatus(ctx context.Context, db TxBeginner, schema string) ([]MigrationState, error) {
	if err := checkSchema(schema); err != nil {
		return nil, err
	}
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migration status: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	if schema == "" {
		if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return nil, fmt.Errorf("postgres: migration status: current schema: %w", err)
		}
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`,
		pgx.Identifier{schema, MigrationsTable}.Sanitize()).Scan(&exists); err != nil {
		return nil, fmt.Errorf("postgres: migration status: %w", err)
	}
	done := map[int]time.Time{}
	if exists {
		if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+pgx.Identifier{schema}.Sanitize()); err != nil {
			return nil, fmt.Errorf("postgres: migration status: search_path: %w", err)
		}
		if done, err = appliedVersions(ctx, tx); err != nil {
			return nil, err
		}
	}
	states := make([]MigrationState, len(ms))
	for i, m := range ms {
		at, ok := done[m.Version]
		states[i] = MigrationState{Migration: m, Applied: ok, AppliedAt: at}
	}
	return states, nil
}

// errNoMigrations guards against an empty embed (a build mistake).
var errNoMigrations = errors.New("postgres: no embedded migrations")

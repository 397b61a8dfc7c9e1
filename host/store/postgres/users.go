package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"stellaops.org/authority/host/users"
)

// UserStore is the users.Store on the table authority_users (migration
// 0003), sharing the token store's pool.
type UserStore struct {
	pool    *pgxpool.Pool
	timeout time.Duration
}

var _ users.Store = (*UserStore)(nil)

// Users returns the user store on s's pool.
func (s *Store) Users() *UserStore { return &UserStore{pool: s.pool, timeout: s.opts.RequestTimeout} }

// Lookup returns the user (see users.Store.Lookup). One indexed read.
func (u *UserStore) Lookup(ctx context.Context, tenant, username string) (*users.User, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	var out users.User
	var scopes []string
	err := u.pool.QueryRow(ctx, `SELECT tenant, username, password_hash, scopes, disabled
		FROM authority_users WHERE tenant = $1 AND username = $2`, tenant, username).Scan(
		&out.Tenant, &out.Username, &out.PasswordHash, &scopes, &out.Disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q in tenant %q", users.ErrNotFound, username, tenant)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: lookup user: %w", err)
	}
	out.Scopes = scopes // NULL stays nil: no limit
	return &out, nil
}

// Put creates or replaces the user (see users.Store.Put).
func (u *UserStore) Put(ctx context.Context, in *users.User) error {
	c, err := users.Canonical(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	var scopes any // nil slice: NULL (no limit), not '{}' (no scope)
	if c.Scopes != nil {
		scopes = c.Scopes
	}
	_, err = u.pool.Exec(ctx, `INSERT INTO authority_users (tenant, username, password_hash, scopes, disabled)
		VALUES ($1, $2, $3, $4::text[], $5)
		ON CONFLICT (tenant, username) DO UPDATE SET password_hash = EXCLUDED.password_hash, scopes = EXCLUDED.scopes, disabled = EXCLUDED.disabled,
			updated_at = now()`, c.Tenant, c.Username, c.PasswordHash, scopes, c.Disabled)
	if err != nil {
		return fmt.Errorf("postgres: put user: %w", err)
	}
	return nil
}

// Ping checks the pool.
func (u *UserStore) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	return u.pool.Ping(ctx)
}

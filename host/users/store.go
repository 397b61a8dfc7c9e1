package users

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// User is one resource owner of a tenant.
type User struct {
	Tenant string
	// Username is the login name and the tokens' sub.
	Username string
	// PasswordHash is an Argon2id PHC string (Hash).
	PasswordHash string
	// Scopes, when not nil, limits what the user's tokens may carry (on
	// top of the client's scopes).
	Scopes   []string
	Disabled bool
}

// Errors of every Store.
var (
	ErrNotFound = errors.New("users: no such user")
	ErrInvalid  = errors.New("users: invalid user")
)

// Store looks users up. Both implementations (Memory, postgres.UserStore)
// pass the contract suite in host/users/userstest.
type Store interface {
	// Lookup returns a copy of the user, or an error wrapping ErrNotFound.
	Lookup(ctx context.Context, tenant, username string) (*User, error)
	// Put creates or replaces the user (tenant, username).
	Put(ctx context.Context, u *User) error
	// Ping reports whether lookups can be served (for /readyz).
	Ping(ctx context.Context) error
}

// Canonical checks u and returns a copy with Subject defaulted.
func Canonical(u *User) (*User, error) {
	if u == nil {
		return nil, fmt.Errorf("%w: nil user", ErrInvalid)
	}
	c := *u
	c.Scopes = slices.Clone(u.Scopes)
	switch {
	case c.Tenant == "" || len(c.Tenant) > 128:
		return nil, fmt.Errorf("%w: tenant: must be 1..128 bytes", ErrInvalid)
	case c.Username == "" || len(c.Username) > 256:
		return nil, fmt.Errorf("%w: username: must be 1..256 bytes", ErrInvalid)
	}
	if _, err := ParsePHC(c.PasswordHash); err != nil {
		return nil, fmt.Errorf("%w: passwordHash: %v", ErrInvalid, err)
	}
	return &c, nil
}

// Memory is the Store of users from configuration (and for tests).
type Memory struct {
	mu    sync.RWMutex
	users map[[2]string]*User
}

var _ Store = (*Memory)(nil)

// NewMemory returns a store holding us (each canonicalized).
func NewMemory(us ...User) (*Memory, error) {
	m := &Memory{users: map[[2]string]*User{}}
	for i := range us {
		if err := m.Put(context.Background(), &us[i]); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Lookup returns a copy of the user.
func (m *Memory) Lookup(ctx context.Context, tenant, username string) (*User, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	u, ok := m.users[[2]string{tenant, username}]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q in tenant %q", ErrNotFound, username, tenant)
	}
	c := *u
	c.Scopes = slices.Clone(u.Scopes)
	return &c, nil
}

// Put creates or replaces the user.
func (m *Memory) Put(ctx context.Context, u *User) error {
	c, err := Canonical(u)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	m.users[[2]string{c.Tenant, c.Username}] = c
	m.mu.Unlock()
	return nil
}

// Ping always succeeds.
func (m *Memory) Ping(ctx context.Context) error { return ctx.Err() }

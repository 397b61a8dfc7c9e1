// Package userstest is the contract every users.Store must pass:
//
//	userstest.Run(t, func(t *testing.T) users.Store { return newStore(t) })
//
// newStore returns an empty store no other test uses.
package userstest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"stellaops.org/authority/host/users"
)

// hash is a real Argon2id hash (of "correct horse"), computed once.
var hash = func() string {
	h, err := users.Hash([]byte("correct horse"), users.Params{MemoryKiB: 7168, Iterations: 5, Parallelism: 1})
	if err != nil {
		panic(err)
	}
	return h
}()

// Run runs the contract as subtests of t.
func Run(t *testing.T, newStore func(t *testing.T) users.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s users.Store)
	}{
		{"PutLookupRoundTrip", testRoundTrip},
		{"UnknownIsErrNotFound", testNotFound},
		{"TenantsAreSeparate", testTenants},
		{"PutReplaces", testReplace},
		{"InvalidRefused", testInvalid},
		{"Ping", testPing},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func testRoundTrip(t *testing.T, s users.Store) {
	in := &users.User{Tenant: "t1", Username: "alice-\u00e9\"@example.com", PasswordHash: hash,
		Scopes: []string{"a", "b c", `d"e`}, Disabled: true}
	if err := s.Put(ctx(t), in); err != nil {
		t.Fatal(err)
	}
	got, err := s.Lookup(ctx(t), "t1", in.Username)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("got %+v, want %+v", got, in)
	}
	got.Scopes[0] = "changed"
	if again, _ := s.Lookup(ctx(t), "t1", in.Username); again.Scopes[0] != "a" {
		t.Fatal("a lookup's copy shares memory with the store")
	}
	bare := &users.User{Tenant: "t1", Username: "bob", PasswordHash: hash}
	if err := s.Put(ctx(t), bare); err != nil {
		t.Fatal(err)
	}
	got, err = s.Lookup(ctx(t), "t1", "bob")
	if err != nil || got.Scopes != nil || got.Disabled {
		t.Fatalf("bob = %+v, %v; want no scope limit, enabled", got, err)
	}
}

func testNotFound(t *testing.T, s users.Store) {
	if _, err := s.Lookup(ctx(t), "t1", "nobody"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("Lookup unknown: %v, want ErrNotFound", err)
	}
}

func testTenants(t *testing.T, s users.Store) {
	if err := s.Put(ctx(t), &users.User{Tenant: "t1", Username: "carol", PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx(t), "t2", "carol"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("tenant t2 sees t1's user: %v", err)
	}
	if _, err := s.Lookup(ctx(t), "t1", "Carol"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("usernames must match exactly: %v", err)
	}
}

func testReplace(t *testing.T, s users.Store) {
	for _, disabled := range []bool{false, true} {
		if err := s.Put(ctx(t), &users.User{Tenant: "t1", Username: "dave", Disabled: disabled, PasswordHash: hash}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.Lookup(ctx(t), "t1", "dave"); err != nil || !got.Disabled {
		t.Fatalf("after replace: %+v, %v", got, err)
	}
}

func testInvalid(t *testing.T, s users.Store) {
	for name, u := range map[string]*users.User{
		"no tenant":   {Username: "x", PasswordHash: hash},
		"no username": {Tenant: "t1", PasswordHash: hash},
		"bcrypt hash": {Tenant: "t1", Username: "x", PasswordHash: "$2a$10$abcdefghijklmnopqrstuu5Z5Z5Z5Z5Z5Z5Z5Z5Z5Z5Z5Z5Z5Z5Z"},
		"clear text":  {Tenant: "t1", Username: "x", PasswordHash: "hunter2"},
	} {
		if err := s.Put(ctx(t), u); !errors.Is(err, users.ErrInvalid) {
			t.Errorf("%s: Put = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Lookup(ctx(t), "t1", "x"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("a refused user was stored: %v", err)
	}
}

func testPing(t *testing.T, s users.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

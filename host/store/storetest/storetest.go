// Package storetest is the contract every store.TokenStore implementation
// must pass. Run it from the implementation's tests:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.TokenStore { return newStore(t) })
//	}
//
// newStore must return an empty store that no other test uses. The suite
// closes the store itself (sometimes more than once); newStore may also
// register its own cleanup.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/host/store"
)

// Purger is implemented by stores that can remove expired tokens on demand;
// Run tests it when the store provides it.
type Purger interface {
	PurgeExpired(ctx context.Context, before time.Time) (int64, error)
}

// Run runs the TokenStore contract as subtests of t.
func Run(t *testing.T, newStore func(t *testing.T) store.TokenStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.TokenStore)
	}{
		{"PutGetRoundTrip", testRoundTrip},
		{"EmptyAndNilSlicesNormalized", testSlicesNormalized},
		{"DefaultsFilled", testDefaults},
		{"CopiesIsolated", testCopiesIsolated},
		{"GetUnknownIsErrNotFound", testNotFound},
		{"PutDuplicateIsErrDuplicate", testDuplicate},
		{"PutInvalidIsErrInvalidToken", testInvalid},
		{"RevokeIdempotent", testRevokeIdempotent},
		{"RevokeUnknownIsFalse", testRevokeUnknown},
		{"RevokeByParentRevokesFamily", testRevokeByParent},
		{"RotateUsesUpOnce", testRotate},
		{"RotateConcurrentOneWins", testRotateConcurrent},
		{"RevokeKeepsRotated", testRevokeKeepsRotated},
		{"ConcurrentPutsAllDurable", testConcurrentPuts},
		{"ConcurrentDuplicatePutsOneWins", testConcurrentDuplicates},
		{"CancelledContext", testCancelled},
		{"Ping", testPing},
		{"PurgeExpired", testPurge},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// baseTime is a fixed instant with nanoseconds and a non-UTC zone, so stores must
// canonicalize.
func baseTime() time.Time {
	return time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 2*3600))
}

func sample(id string) *store.Token {
	return &store.Token{
		ID:        id,
		Kind:      store.KindAccessToken,
		Tenant:    "tenant-a",
		ClientID:  "client-1",
		Subject:   "alice",
		Scopes:    []string{"openid", "read:things"},
		Audiences: []string{"https://api.example"},
		IssuedAt:  baseTime(),
		ExpiresAt: baseTime().Add(time.Hour),
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustPut(t *testing.T, s store.TokenStore, tok *store.Token) {
	t.Helper()
	if err := s.Put(ctx(t), tok); err != nil {
		t.Fatalf("Put(%q): %v", tok.ID, err)
	}
}

func mustGet(t *testing.T, s store.TokenStore, id string) *store.Token {
	t.Helper()
	got, err := s.Get(ctx(t), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return got
}

func diff(t *testing.T, got, want *store.Token) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("token mismatch\n got: %#v\nwant: %#v", got, want)
	}
}

func testRoundTrip(t *testing.T, s store.TokenStore) {
	in := &store.Token{
		ID:                "jti-\u00e9\"'\\{},; x",
		Kind:              store.KindRefreshToken,
		Tenant:            "tenant-b",
		ClientID:          "client \"quoted\"",
		Subject:           "bob",
		Scopes:            []string{"a", "b c", `d"e`, `f\g`, "{h}", "NULL", ""},
		Audiences:         []string{"aud1", "aud,2"},
		IssuedAt:          baseTime(),
		ExpiresAt:         baseTime().Add(90 * 24 * time.Hour),
		Status:            store.StatusRevoked,
		RevokedAt:         baseTime().Add(time.Minute + 999),
		SenderConstraint:  store.ConstraintDPoPMTLS,
		KeyThumbprint:     "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
		SenderCertificate: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2",
		ParentID:          "parent-jti",
		AuthTime:          baseTime().Add(-time.Hour + 7),
	}
	mustPut(t, s, in)
	want := *in
	want.Scopes = append([]string(nil), in.Scopes...)
	want.Audiences = append([]string(nil), in.Audiences...)
	want.IssuedAt = baseTime().UTC().Truncate(time.Microsecond)
	want.ExpiresAt = baseTime().Add(90 * 24 * time.Hour).UTC().Truncate(time.Microsecond)
	want.RevokedAt = baseTime().Add(time.Minute + 999).UTC().Truncate(time.Microsecond)
	want.AuthTime = baseTime().Add(-time.Hour + 7).UTC().Truncate(time.Microsecond)
	got := mustGet(t, s, in.ID)
	diff(t, got, &want)
	if got.IssuedAt.Location() != time.UTC || got.ExpiresAt.Location() != time.UTC || got.RevokedAt.Location() != time.UTC {
		t.Fatalf("times not in UTC: %v %v %v", got.IssuedAt.Location(), got.ExpiresAt.Location(), got.RevokedAt.Location())
	}

	long := sample(strings.Repeat("x", store.MaxIDLength))
	mustPut(t, s, long)
	if got := mustGet(t, s, long.ID); got.ID != long.ID {
		t.Fatalf("long id mangled: %q", got.ID)
	}
}

func testSlicesNormalized(t *testing.T, s store.TokenStore) {
	a := sample("nil-slices")
	a.Scopes, a.Audiences = nil, nil
	b := sample("empty-slices")
	b.Scopes, b.Audiences = []string{}, []string{}
	mustPut(t, s, a)
	mustPut(t, s, b)
	for _, id := range []string{a.ID, b.ID} {
		got := mustGet(t, s, id)
		if got.Scopes != nil || got.Audiences != nil {
			t.Fatalf("%s: empty slices must read back as nil, got %#v %#v", id, got.Scopes, got.Audiences)
		}
	}
}

func testDefaults(t *testing.T, s store.TokenStore) {
	in := sample("defaults")
	mustPut(t, s, in)
	got := mustGet(t, s, in.ID)
	if got.Status != store.StatusActive || !got.RevokedAt.IsZero() {
		t.Fatalf("status %q revokedAt %v, want active and zero", got.Status, got.RevokedAt)
	}
	if got.SenderConstraint != store.ConstraintNone || got.KeyThumbprint != "" || got.SenderCertificate != "" || got.ParentID != "" {
		t.Fatalf("sender constraint defaults wrong: %#v", got)
	}
}

func testCopiesIsolated(t *testing.T, s store.TokenStore) {
	in := sample("copies")
	mustPut(t, s, in)
	in.Scopes[0] = "mutated"
	in.Audiences[0] = "mutated"
	in.Subject = "mutated"
	got := mustGet(t, s, "copies")
	if got.Scopes[0] != "openid" || got.Audiences[0] != "https://api.example" || got.Subject != "alice" {
		t.Fatalf("stored token changed through Put's argument: %#v", got)
	}
	got.Scopes[0] = "mutated"
	got.Audiences = append(got.Audiences[:0], "mutated")
	got.Status = store.StatusRevoked
	again := mustGet(t, s, "copies")
	if again.Scopes[0] != "openid" || again.Audiences[0] != "https://api.example" || again.Status != store.StatusActive {
		t.Fatalf("stored token changed through Get's result: %#v", again)
	}
}

func testNotFound(t *testing.T, s store.TokenStore) {
	_, err := s.Get(ctx(t), "no-such-token")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get unknown: err = %v, want ErrNotFound", err)
	}
}

func testDuplicate(t *testing.T, s store.TokenStore) {
	mustPut(t, s, sample("dup"))
	other := sample("dup")
	other.Subject = "mallory"
	if err := s.Put(ctx(t), other); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("second Put: err = %v, want ErrDuplicate", err)
	}
	if got := mustGet(t, s, "dup"); got.Subject != "alice" {
		t.Fatalf("duplicate Put changed the stored token: subject %q", got.Subject)
	}
}

func testInvalid(t *testing.T, s store.TokenStore) {
	cases := map[string]func(*store.Token){
		"empty id":             func(x *store.Token) { x.ID = "" },
		"id too long":          func(x *store.Token) { x.ID = strings.Repeat("x", store.MaxIDLength+1) },
		"unknown kind":         func(x *store.Token) { x.Kind = "id_token" },
		"no expiry":            func(x *store.Token) { x.ExpiresAt = time.Time{} },
		"no issuedAt":          func(x *store.Token) { x.IssuedAt = time.Time{} },
		"expires before issue": func(x *store.Token) { x.ExpiresAt = x.IssuedAt.Add(-time.Second) },
		"unknown status":       func(x *store.Token) { x.Status = "paused" },
		"revoked without time": func(x *store.Token) { x.Status = store.StatusRevoked },
		"active with revokedAt": func(x *store.Token) {
			x.RevokedAt = baseTime()
		},
		"unknown constraint":    func(x *store.Token) { x.SenderConstraint = "magic" },
		"dpop without jkt":      func(x *store.Token) { x.SenderConstraint = store.ConstraintDPoP },
		"mtls without x5t":      func(x *store.Token) { x.SenderConstraint = store.ConstraintMTLS },
		"jkt without dpop":      func(x *store.Token) { x.KeyThumbprint = "abc" },
		"cert without mtls":     func(x *store.Token) { x.SenderCertificate = "abc" },
		"own parent":            func(x *store.Token) { x.ParentID = x.ID },
		"dpop+mtls missing x5t": func(x *store.Token) { x.SenderConstraint, x.KeyThumbprint = store.ConstraintDPoPMTLS, "abc" },
	}
	for name, mutate := range cases {
		tok := sample("invalid")
		mutate(tok)
		if err := s.Put(ctx(t), tok); !errors.Is(err, store.ErrInvalidToken) {
			t.Errorf("%s: Put err = %v, want ErrInvalidToken", name, err)
		}
	}
	if err := s.Put(ctx(t), nil); !errors.Is(err, store.ErrInvalidToken) {
		t.Errorf("nil token: Put err = %v, want ErrInvalidToken", err)
	}
	if _, err := s.Get(ctx(t), "invalid"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an invalid token was stored: Get err = %v", err)
	}
}

func testRevokeIdempotent(t *testing.T, s store.TokenStore) {
	mustPut(t, s, sample("rv"))
	mustPut(t, s, sample("other"))
	at := baseTime().Add(10*time.Minute + 1500)
	for i, when := range []time.Time{at, at.Add(time.Hour)} {
		ok, err := s.Revoke(ctx(t), "rv", when)
		if err != nil || !ok {
			t.Fatalf("Revoke #%d = %v, %v; want true, nil", i+1, ok, err)
		}
	}
	got := mustGet(t, s, "rv")
	if got.Status != store.StatusRevoked {
		t.Fatalf("status %q, want revoked", got.Status)
	}
	if want := at.UTC().Truncate(time.Microsecond); !got.RevokedAt.Equal(want) || got.RevokedAt.Location() != time.UTC {
		t.Fatalf("revokedAt %v, want the first revocation %v in UTC", got.RevokedAt, want)
	}
	if o := mustGet(t, s, "other"); o.Status != store.StatusActive {
		t.Fatalf("revoking one token revoked another")
	}
}

func testRevokeUnknown(t *testing.T, s store.TokenStore) {
	ok, err := s.Revoke(ctx(t), "never-issued", baseTime())
	if err != nil || ok {
		t.Fatalf("Revoke unknown = %v, %v; want false, nil", ok, err)
	}
	if _, err := s.Get(ctx(t), "never-issued"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Revoke unknown created a token: %v", err)
	}
}

func testRevokeByParent(t *testing.T, s store.TokenStore) {
	// root <- child1 <- grandchild ; root <- child2 (already revoked) ; unrelated
	root := sample("root")
	root.Kind = store.KindRefreshToken
	c1 := sample("child1")
	c1.ParentID = "root"
	gc := sample("grandchild")
	gc.ParentID = "child1"
	c2 := sample("child2")
	c2.ParentID = "root"
	c2.Status, c2.RevokedAt = store.StatusRevoked, baseTime()
	un := sample("unrelated")
	un.ParentID = "elsewhere"
	for _, tok := range []*store.Token{root, c1, gc, c2, un} {
		mustPut(t, s, tok)
	}
	at := baseTime().Add(time.Minute)
	n, err := s.RevokeByParent(ctx(t), "root", at)
	if err != nil || n != 2 {
		t.Fatalf("RevokeByParent = %d, %v; want 2, nil", n, err)
	}
	want := map[string]store.Status{"root": store.StatusActive, "child1": store.StatusRevoked,
		"grandchild": store.StatusRevoked, "child2": store.StatusRevoked, "unrelated": store.StatusActive}
	for id, st := range want {
		if got := mustGet(t, s, id); got.Status != st {
			t.Errorf("%s: status %q, want %q", id, got.Status, st)
		}
	}
	if got := mustGet(t, s, "child2"); !got.RevokedAt.Equal(baseTime().UTC().Truncate(time.Microsecond)) {
		t.Errorf("child2 revokedAt changed to %v", got.RevokedAt)
	}
	if n, err := s.RevokeByParent(ctx(t), "root", at); err != nil || n != 0 {
		t.Fatalf("second RevokeByParent = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.RevokeByParent(ctx(t), "nobody", at); err != nil || n != 0 {
		t.Fatalf("RevokeByParent unknown = %d, %v; want 0, nil", n, err)
	}
}

func testConcurrentPuts(t *testing.T, s store.TokenStore) {
	const n = 100
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := sample(fmt.Sprintf("conc-%03d", i))
			tok.Subject = fmt.Sprintf("user-%d", i)
			errs[i] = s.Put(ctx(t), tok)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Put #%d: %v", i, err)
		}
	}
	for i := range n {
		if got := mustGet(t, s, fmt.Sprintf("conc-%03d", i)); got.Subject != fmt.Sprintf("user-%d", i) {
			t.Fatalf("token %d has subject %q", i, got.Subject)
		}
	}
}

func testConcurrentDuplicates(t *testing.T, s store.TokenStore) {
	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := sample("contested")
			tok.Subject = fmt.Sprintf("user-%d", i)
			errs[i] = s.Put(ctx(t), tok)
			if i%2 == 0 { // interleave unrelated writes in the same batches
				if err := s.Put(ctx(t), sample(fmt.Sprintf("bystander-%d", i))); err != nil {
					t.Errorf("bystander Put failed: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	winners := 0
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
			winner = fmt.Sprintf("user-%d", i)
		case !errors.Is(err, store.ErrDuplicate):
			t.Fatalf("Put #%d: %v, want nil or ErrDuplicate", i, err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d Puts of one id succeeded, want exactly 1", winners)
	}
	if got := mustGet(t, s, "contested"); got.Subject != winner {
		t.Fatalf("stored subject %q, but the successful Put was %q", got.Subject, winner)
	}
}

func testCancelled(t *testing.T, s store.TokenStore) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(c, sample("cancelled")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with cancelled ctx: %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx(t), "cancelled"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Put with cancelled ctx stored the token: Get err = %v", err)
	}
	mustPut(t, s, sample("present"))
	if _, err := s.Get(c, "present"); err == nil {
		t.Fatalf("Get with cancelled ctx succeeded")
	}
	if _, err := s.Revoke(c, "present", baseTime()); err == nil {
		t.Fatalf("Revoke with cancelled ctx succeeded")
	}
	if got := mustGet(t, s, "present"); got.Status != store.StatusActive {
		t.Fatalf("Revoke with cancelled ctx revoked the token")
	}
	if err := s.Ping(c); err == nil {
		t.Fatalf("Ping with cancelled ctx succeeded")
	}
}

func testPing(t *testing.T, s store.TokenStore) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testPurge(t *testing.T, s store.TokenStore) {
	p, ok := s.(Purger)
	if !ok {
		t.Skip("store does not implement PurgeExpired")
	}
	old := sample("old")
	old.ExpiresAt = baseTime().Add(time.Second)
	fresh := sample("fresh")
	mustPut(t, s, old)
	mustPut(t, s, fresh)
	n, err := p.PurgeExpired(ctx(t), baseTime().Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PurgeExpired = %d, %v; want 1, nil", n, err)
	}
	if _, err := s.Get(ctx(t), "old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired token still present: %v", err)
	}
	mustGet(t, s, "fresh")
	// The ID of a purged token can be stored again.
	mustPut(t, s, old)
}

func testClosed(t *testing.T, s store.TokenStore) {
	mustPut(t, s, sample("before-close"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Put(ctx(t), sample("after-close")); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
	if err := s.Ping(ctx(t)); err == nil {
		t.Fatalf("Ping after Close succeeded")
	}
}

func testRotate(t *testing.T, s store.TokenStore) {
	rt := sample("rt")
	rt.Kind = store.KindRefreshToken
	mustPut(t, s, rt)
	at := baseTime().Add(time.Minute + 1500)
	before, err := s.Rotate(ctx(t), "rt", at)
	if err != nil {
		t.Fatalf("first Rotate: %v", err)
	}
	if before.Status != store.StatusActive || !before.RevokedAt.IsZero() || before.Subject != "alice" {
		t.Fatalf("Rotate returned %+v, want the token as it was (active)", before)
	}
	got := mustGet(t, s, "rt")
	if got.Status != store.StatusRotated || !got.RevokedAt.Equal(at.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("after Rotate: status %q at %v, want rotated at %v", got.Status, got.RevokedAt, at)
	}
	again, err := s.Rotate(ctx(t), "rt", at.Add(time.Hour))
	if !errors.Is(err, store.ErrNotActive) || again == nil || again.Status != store.StatusRotated {
		t.Fatalf("second Rotate = %+v, %v; want the rotated token and ErrNotActive", again, err)
	}
	if got := mustGet(t, s, "rt"); !got.RevokedAt.Equal(at.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("second Rotate moved the rotation time to %v", got.RevokedAt)
	}
	rv := sample("revoked-rt")
	mustPut(t, s, rv)
	if _, err := s.Revoke(ctx(t), "revoked-rt", at); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Rotate(ctx(t), "revoked-rt", at); !errors.Is(err, store.ErrNotActive) || got.Status != store.StatusRevoked {
		t.Fatalf("Rotate of a revoked token = %+v, %v; want it revoked and ErrNotActive", got, err)
	}
	if _, err := s.Rotate(ctx(t), "never-issued", at); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Rotate unknown: %v, want ErrNotFound", err)
	}
	if _, err := s.Rotate(ctx(t), "rt", time.Time{}); !errors.Is(err, store.ErrInvalidToken) {
		t.Fatalf("Rotate with a zero time: %v, want ErrInvalidToken", err)
	}
}

func testRotateConcurrent(t *testing.T, s store.TokenStore) {
	const n = 16
	for round := range 3 {
		id := fmt.Sprintf("race-%d", round)
		mustPut(t, s, sample(id))
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.Rotate(ctx(t), id, baseTime().Add(time.Duration(i)*time.Second))
			}()
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, store.ErrNotActive):
				t.Fatalf("round %d caller %d: %v", round, i, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of %d concurrent Rotate calls succeeded, want exactly 1", round, won, n)
		}
	}
}

func testRevokeKeepsRotated(t *testing.T, s store.TokenStore) {
	mustPut(t, s, sample("rot"))
	at := baseTime().Add(time.Minute)
	if _, err := s.Rotate(ctx(t), "rot", at); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Revoke(ctx(t), "rot", at.Add(time.Hour)); err != nil || !ok {
		t.Fatalf("Revoke of a rotated token = %v, %v; want true, nil", ok, err)
	}
	child := sample("rot-child")
	child.ParentID = "rot"
	mustPut(t, s, child)
	if n, err := s.RevokeByParent(ctx(t), "rot", at.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("RevokeByParent under a rotated parent = %d, %v; want 1", n, err)
	}
	if got := mustGet(t, s, "rot"); got.Status != store.StatusRotated || !got.RevokedAt.Equal(at.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("a rotated token became %q at %v; it must keep its status and time", got.Status, got.RevokedAt)
	}
}

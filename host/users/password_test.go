package users_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/host/users"
	"stellaops.org/authority/host/users/userstest"
)

// cheap are the cheapest parameters CheckPolicy accepts (m=7 MiB, t=5).
var cheap = users.Params{MemoryKiB: 7168, Iterations: 5, Parallelism: 1}

// The reference implementation's Argon2id vector (phc-winner-argon2
// src/test.c): password "password", salt "somesalt", m=64 MiB, t=2, p=1.
const referenceVector = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"

func TestArgon2idReferenceVector(t *testing.T) {
	h, err := users.ParsePHC(referenceVector)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Matches([]byte("password")) {
		t.Fatal("the reference vector does not verify")
	}
	if h.Matches([]byte("Password")) {
		t.Fatal("another password verifies")
	}
	if h.String() != referenceVector {
		t.Fatalf("re-encoded as %s", h.String())
	}
}

func TestHashVerifyRoundTrip(t *testing.T) {
	s, err := users.Hash([]byte("s3cret pass"), cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, "$argon2id$v=19$m=7168,t=5,p=1$") {
		t.Fatalf("unexpected PHC string %s", s)
	}
	h, err := users.ParsePHC(s)
	if err != nil || !h.Matches([]byte("s3cret pass")) || h.Matches([]byte("s3cret pasS")) {
		t.Fatalf("round trip failed: %v", err)
	}
	if len(h.Salt) != 16 || len(h.Key) != 32 {
		t.Fatalf("salt %d key %d bytes, want 16 and 32", len(h.Salt), len(h.Key))
	}
	s2, _ := users.Hash([]byte("s3cret pass"), cheap)
	if s2 == s {
		t.Fatal("two hashes of one password share a salt")
	}
}

func TestParamsOWASPFloor(t *testing.T) {
	for _, p := range []users.Params{
		users.DefaultParams, {MemoryKiB: 47104, Iterations: 1, Parallelism: 1}, {MemoryKiB: 12288, Iterations: 3, Parallelism: 1},
		{MemoryKiB: 9216, Iterations: 4, Parallelism: 1}, cheap,
	} {
		if err := p.CheckPolicy(); err != nil {
			t.Errorf("%+v (an OWASP configuration) refused: %v", p, err)
		}
	}
	for _, p := range []users.Params{
		{MemoryKiB: 4096, Iterations: 10, Parallelism: 1}, {MemoryKiB: 19456, Iterations: 1, Parallelism: 1},
		{MemoryKiB: 19456, Iterations: 2, Parallelism: 0}, {MemoryKiB: users.MaxMemoryKiB + 1, Iterations: 2, Parallelism: 1},
	} {
		if err := p.CheckPolicy(); err == nil {
			t.Errorf("%+v (below the floor or over a limit) accepted", p)
		}
	}
	if _, err := users.Hash([]byte("x"), users.Params{MemoryKiB: 1024, Iterations: 1, Parallelism: 1}); err == nil {
		t.Fatal("Hash used parameters below the floor")
	}
}

func TestParsePHCStrict(t *testing.T) {
	good := strings.TrimPrefix(referenceVector, "$argon2id$v=19$m=65536,t=2,p=1$")
	for _, s := range []string{
		"", "argon2id", "$argon2i$v=19$m=65536,t=2,p=1$" + good,
		"$argon2id$m=65536,t=2,p=1$" + good, // no version
		"$argon2id$v=16$m=65536,t=2,p=1$" + good,
		"$argon2id$v=19$t=2,m=65536,p=1$" + good,  // order
		"$argon2id$v=19$m=065536,t=2,p=1$" + good, // leading zero
		"$argon2id$v=19$m=65536,t=0,p=1$" + good,
		"$argon2id$v=19$m=4294967296,t=2,p=1$" + good,
		"$argon2id$v=19$m=1048576,t=2,p=1$" + good, // over MaxMemoryKiB
		"$argon2id$v=19$m=65536,t=2,p=1,k=1$" + good,
		"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ=$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", // padding
		"$argon2id$v=19$m=65536,t=2,p=1$c29t$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",         // short salt
		"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFh",                                         // short key
		"$argon2id$v=19$m=8,t=2,p=2$" + good,                                                      // m < 8p
		referenceVector + "$",
		"$argon2id$v=19$m=65536,t=2,p=1$c29tZX\r\nNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", // CR LF skipped by encoding/base64
	} {
		if _, err := users.ParsePHC(s); !errors.Is(err, users.ErrMalformedHash) {
			t.Errorf("ParsePHC(%q) = %v, want ErrMalformedHash", s, err)
		}
	}
}

func newVerifier(t *testing.T, o users.VerifierOptions) *users.Verifier {
	t.Helper()
	o.Params = cheap
	v, err := users.NewVerifier(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifierUnknownUserRunsTheKDF(t *testing.T) {
	v := newVerifier(t, users.VerifierOptions{})
	hash, _ := users.Hash([]byte("pw"), cheap)
	ctx := context.Background()
	if ok, err := v.Check(ctx, hash, "pw"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, err := v.Check(ctx, hash, "wrong"); ok || err != nil {
		t.Fatalf("wrong password: %v %v", ok, err)
	}
	if ok, err := v.Check(ctx, "", "pw"); ok || err != nil {
		t.Fatalf("unknown user: %v %v", ok, err)
	}
	if ok, err := v.Check(ctx, "$2a$10$bcrypt", "pw"); ok || !errors.Is(err, users.ErrMalformedHash) {
		t.Fatalf("malformed stored hash: %v %v", ok, err)
	}
	if checks, _ := v.Stats(); checks != 4 {
		t.Fatalf("%d KDF evaluations for 4 checks: unknown users and bad hashes must cost one too", checks)
	}
	long := strings.Repeat("x", users.MaxPasswordLen+1)
	if ok, _ := v.Check(ctx, hash, long); ok {
		t.Fatal("an over-long password matched")
	}
}

func TestVerifierBoundsConcurrentKDF(t *testing.T) {
	v := newVerifier(t, users.VerifierOptions{MaxConcurrent: 1, MaxWaiting: 2, WaitTimeout: time.Minute})
	hash, _ := users.Hash([]byte("pw"), cheap)
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = v.Check(context.Background(), hash, "pw")
		}()
	}
	wg.Wait()
	var busy int
	for _, err := range errs {
		if errors.Is(err, users.ErrBusy) {
			busy++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// At most 1 running and 2 waiting at any moment: with 12 at once, some
	// must have been refused (how many depends on scheduling).
	if busy == 0 {
		t.Fatalf("12 concurrent checks with 1 slot and 2 waiting: none refused")
	}
	if checks, b := v.Stats(); checks+b != n {
		t.Fatalf("checks %d + busy %d != %d", checks, b, n)
	}
}

func TestVerifierWaitTimeout(t *testing.T) {
	v := newVerifier(t, users.VerifierOptions{MaxConcurrent: 1, MaxWaiting: 8, WaitTimeout: time.Millisecond})
	hash, _ := users.Hash([]byte("pw"), users.Params{MemoryKiB: 32768, Iterations: 4, Parallelism: 1})
	// Two slow checks started together on one slot, with a 1 ms wait: the
	// second must give up unless the first finished before it started,
	// which a round may allow on a loaded machine; 20 rounds may not all.
	for round := 0; round < 20; round++ {
		errs := make(chan error, 2)
		for range 2 {
			go func() { _, err := v.Check(context.Background(), hash, "pw"); errs <- err }()
		}
		e1, e2 := <-errs, <-errs
		if errors.Is(e1, users.ErrBusy) || errors.Is(e2, users.ErrBusy) {
			return
		}
	}
	t.Fatal("two concurrent checks on one slot with a 1 ms wait never produced ErrBusy")
}

func TestMemoryContract(t *testing.T) {
	userstest.Run(t, func(t *testing.T) users.Store {
		m, err := users.NewMemory()
		if err != nil {
			t.Fatal(err)
		}
		return m
	})
}

func FuzzParsePHC(f *testing.F) {
	f.Add(referenceVector)
	f.Add("$argon2id$v=19$m=7168,t=5,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=,t=,p=$$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := users.ParsePHC(s)
		if err != nil {
			if !errors.Is(err, users.ErrMalformedHash) {
				t.Fatalf("error %v does not wrap ErrMalformedHash", err)
			}
			return
		}
		// Accepted strings are canonical, and within the limits.
		if h.String() != s {
			t.Fatalf("accepted non-canonical %q (re-encodes as %q)", s, h.String())
		}
		if h.MemoryKiB > users.MaxMemoryKiB || h.Iterations > users.MaxIterations || h.Parallelism > users.MaxParallelism {
			t.Fatalf("accepted parameters over the limits: %+v", h.Params)
		}
	})
}

// The KDF's average CPU is bounded: once a check has spent the budget
// (CPUShare x Cores per second), the next waits for it to refill, and is
// refused when that would take longer than WaitTimeout.
func TestVerifierCPUBudget(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	v := newVerifier(t, users.VerifierOptions{CPUShare: 0.01, Cores: 1, WaitTimeout: 50 * time.Millisecond, Now: clock})
	hash, _ := users.Hash([]byte("pw"), cheap)
	if ok, err := v.Check(context.Background(), hash, "pw"); !ok || err != nil {
		t.Fatalf("first check within the budget: %v %v", ok, err)
	}
	// The clock stands still: the debt of the first check (its KDF time
	// minus 10 ms of budget) needs seconds at 1% of a core to clear.
	if _, err := v.Check(context.Background(), hash, "pw"); !errors.Is(err, users.ErrBusy) {
		t.Fatalf("second check in debt: %v, want ErrBusy", err)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if ok, err := v.Check(context.Background(), hash, "pw"); !ok || err != nil {
		t.Fatalf("after the budget refilled: %v %v", ok, err)
	}
	if checks, busy := v.Stats(); checks != 2 || busy != 1 {
		t.Fatalf("checks %d busy %d, want 2 and 1", checks, busy)
	}
}

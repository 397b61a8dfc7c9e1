package users

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBusy: every KDF slot is taken and the wait queue is full, or the wait
// for a slot timed out. Retryable: the token endpoint answers 503.
var ErrBusy = errors.New("users: password checks saturated")

// VerifierOptions bound the KDF work of password checks.
type VerifierOptions struct {
	// Params are the cost of the dummy hash unknown users are checked
	// against (the configured hashing cost, so an unknown user costs what
	// a known one does).
	Params Params
	// MaxConcurrent KDF evaluations run at once (each holds
	// Params.MemoryKiB and one core for its duration). Default 1.
	MaxConcurrent int
	// MaxWaiting checks may wait for a slot; more fail at once with
	// ErrBusy. Default 32.
	MaxWaiting int
	// WaitTimeout bounds the wait for a slot and for CPU budget. Default 1s.
	WaitTimeout time.Duration
	// CPUShare is the share of Cores the KDF may use on average (0..1];
	// checks beyond it wait for budget, within WaitTimeout. Default 0.2.
	CPUShare float64
	// Cores the share is of; default GOMAXPROCS.
	Cores int
	// Now is the clock of the budget; default time.Now.
	Now func() time.Time
}

// Verifier checks passwords with at most MaxConcurrent KDF evaluations in
// flight, so a flood of password requests takes at most that many cores
// and that much memory from the rest of the server (client_credentials
// never enters it). It is safe for concurrent use.
type Verifier struct {
	slots      chan struct{}
	waiting    atomic.Int64
	maxWaiting int64
	wait       time.Duration
	dummy      PHC
	budget     cpuBudget
	unit       float64 // core-seconds per KiB-iteration (calibrated)
	// Counters for metrics and tests.
	checks, busy atomic.Int64
}

// NewVerifier computes the dummy hash (one KDF evaluation) and returns the
// verifier.
func NewVerifier(o VerifierOptions) (*Verifier, error) {
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 1
	}
	if o.MaxWaiting <= 0 {
		o.MaxWaiting = 32
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = time.Second
	}
	if o.CPUShare <= 0 || o.CPUShare > 1 {
		o.CPUShare = 0.2
	}
	if o.Cores <= 0 {
		o.Cores = runtime.GOMAXPROCS(0)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	pw := make([]byte, 32)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	s, err := Hash(pw, o.Params)
	if err != nil {
		return nil, fmt.Errorf("argon2id.%w", err)
	}
	dummy, err := ParsePHC(s)
	if err != nil {
		return nil, err
	}
	// Calibrate the CPU cost of one KiB-iteration: the fastest of three
	// runs is the closest to the KDF's CPU time (slower ones waited for a
	// core). Each check is charged this times its hash's m x t, not its
	// wall time, which under load would count other requests' CPU.
	best := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		dummy.Matches(pw)
		best = min(best, time.Since(start))
	}
	unit := best.Seconds() / (float64(dummy.MemoryKiB) * float64(dummy.Iterations))
	rate := o.CPUShare * float64(o.Cores) // core-seconds per second
	v := &Verifier{slots: make(chan struct{}, o.MaxConcurrent), maxWaiting: int64(o.MaxWaiting), wait: o.WaitTimeout, dummy: dummy,
		budget: cpuBudget{rate: rate, max: rate, now: o.Now}, unit: unit}
	v.budget.level, v.budget.last = rate, o.Now()
	return v, nil
}

// Check reports whether password matches the PHC string hash. hash ""
// (an unknown or disabled user) is checked against the dummy hash and
// never matches, so the time taken does not say whether the user exists. A
// malformed hash is also checked against the dummy and returns
// ErrMalformedHash. ErrBusy or ctx.Err() mean no check ran.
func (v *Verifier) Check(ctx context.Context, hash string, password string) (bool, error) {
	h, perr := v.dummy, error(nil)
	if hash != "" {
		var err error
		if h, err = ParsePHC(hash); err != nil {
			h, perr = v.dummy, err
		}
	}
	real := hash != "" && perr == nil
	if len(password) > MaxPasswordLen {
		// Hashing it would let a caller choose the cost; it cannot be a
		// password we accepted (Hash refuses such passwords).
		password, real = password[:MaxPasswordLen], false
	}
	deadline := time.Now().Add(v.wait)
	if err := v.acquire(ctx); err != nil {
		return false, err
	}
	if err := v.budget.await(ctx, deadline); err != nil {
		<-v.slots
		v.busy.Add(1)
		return false, err
	}
	ok := h.Matches([]byte(password))
	v.budget.spend(v.unit * float64(h.MemoryKiB) * float64(h.Iterations))
	<-v.slots
	v.checks.Add(1)
	if perr != nil {
		return false, perr
	}
	return ok && real, nil
}

func (v *Verifier) acquire(ctx context.Context) error {
	select {
	case v.slots <- struct{}{}:
		return nil
	default:
	}
	if v.waiting.Add(1) > v.maxWaiting {
		v.waiting.Add(-1)
		v.busy.Add(1)
		return fmt.Errorf("%w: %d checks waiting", ErrBusy, v.maxWaiting)
	}
	defer v.waiting.Add(-1)
	t := time.NewTimer(v.wait)
	defer t.Stop()
	select {
	case v.slots <- struct{}{}:
		return nil
	case <-t.C:
		v.busy.Add(1)
		return fmt.Errorf("%w: no KDF slot within %s", ErrBusy, v.wait)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats are the verifier's counters: checks run, checks refused busy.
func (v *Verifier) Stats() (checks, busy int64) { return v.checks.Load(), v.busy.Load() }

// cpuBudget is a token bucket of KDF core-seconds: it refills at rate
// (CPUShare x Cores per second) up to one second's worth, each check
// spends its KDF's calibrated CPU cost, and a check waits while the level
// is below zero. Concurrent checks may overdraw it; the next ones wait the
// debt off, so the average holds.
type cpuBudget struct {
	mu        sync.Mutex
	level     float64 // core-seconds
	last      time.Time
	rate, max float64
	now       func() time.Time
}

func (b *cpuBudget) refill() float64 {
	now := b.now()
	b.level = min(b.max, b.level+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	return b.level
}

// await returns once the budget is not in debt, or ErrBusy if that would
// be after deadline.
func (b *cpuBudget) await(ctx context.Context, deadline time.Time) error {
	for {
		b.mu.Lock()
		level := b.refill()
		b.mu.Unlock()
		if level >= 0 {
			return nil
		}
		wait := time.Duration(-level / b.rate * float64(time.Second))
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("%w: KDF CPU budget spent (%.0f ms in debt)", ErrBusy, -level*1000)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (b *cpuBudget) spend(coreSeconds float64) {
	b.mu.Lock()
	b.refill()
	b.level -= coreSeconds
	b.mu.Unlock()
}

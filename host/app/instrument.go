package app

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"

	"stellaops.org/authority/host/store"
	"stellaops.org/authority/host/telemetry"
)

// instrumentedStore records the latency and errors of every token store
// call (authority_store_operation_duration_seconds, authority_store_errors_total).
type instrumentedStore struct {
	store.TokenStore
	kind    string
	metrics *telemetry.Metrics
	tracing *telemetry.Tracing
	health  *storeHealth
}

// begin starts the store span and returns the function that ends it and
// records the operation.
func (s instrumentedStore) begin(ctx context.Context, op string) (context.Context, func(error)) {
	start := time.Now()
	ctx, span := s.tracing.Start(ctx, "store."+op)
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "store "+op+" failed")
		}
		span.End()
		s.metrics.StoreOperation(ctx, s.kind, op, time.Since(start), err)
		if op != "ping" {
			s.health.record(err != nil)
		}
	}
}

func (s instrumentedStore) Put(ctx context.Context, t *store.Token) error {
	ctx, end := s.begin(ctx, "put")
	err := s.TokenStore.Put(ctx, t)
	end(err)
	return err
}

func (s instrumentedStore) Get(ctx context.Context, id string) (*store.Token, error) {
	ctx, end := s.begin(ctx, "get")
	t, err := s.TokenStore.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		end(nil) // an unknown token is an answer, not a failure
	} else {
		end(err)
	}
	return t, err
}

func (s instrumentedStore) Revoke(ctx context.Context, id string, at time.Time) (bool, error) {
	ctx, end := s.begin(ctx, "revoke")
	ok, err := s.TokenStore.Revoke(ctx, id, at)
	end(err)
	return ok, err
}

func (s instrumentedStore) Rotate(ctx context.Context, id string, at time.Time) (*store.Token, error) {
	ctx, end := s.begin(ctx, "rotate")
	t, err := s.TokenStore.Rotate(ctx, id, at)
	if errors.Is(err, store.ErrNotActive) || errors.Is(err, store.ErrNotFound) {
		end(nil) // reuse or an unknown token is an answer, not a failure
	} else {
		end(err)
	}
	return t, err
}

func (s instrumentedStore) Ping(ctx context.Context) error {
	ctx, end := s.begin(ctx, "ping")
	err := s.TokenStore.Ping(ctx)
	end(err)
	return err
}

// storeHealthWindow is how far back readiness looks at token-store calls.
const storeHealthWindow = 30 // seconds, one bucket each

// storeHealthMinCalls is how many calls the window needs before their
// failure share is reported at all.
const storeHealthMinCalls = 10

// storeHealth counts token-store calls and failures (timeouts, refusals,
// errors) per second over the last storeHealthWindow seconds. Recording is
// two atomic adds; nothing is allocated per call.
type storeHealth struct {
	now     func() time.Time
	buckets [storeHealthWindow]struct {
		sec           atomic.Int64
		calls, failed atomic.Int64
	}
}

func (h *storeHealth) record(failed bool) {
	sec := h.now().Unix()
	b := &h.buckets[sec%storeHealthWindow]
	if old := b.sec.Load(); old != sec && b.sec.CompareAndSwap(old, sec) {
		b.calls.Store(0)
		b.failed.Store(0)
	}
	b.calls.Add(1)
	if failed {
		b.failed.Add(1)
	}
}

// recent returns the calls and failures of the last window.
func (h *storeHealth) recent() (calls, failed int64) {
	now := h.now().Unix()
	for i := range h.buckets {
		b := &h.buckets[i]
		if s := b.sec.Load(); s > now-storeHealthWindow && s <= now {
			calls += b.calls.Load()
			failed += b.failed.Load()
		}
	}
	return calls, failed
}

// check is the token-store readiness rule. The node is unready only when
// its own path to the store is broken: the ping (bounded by the readiness
// deadline) fails. Recent call failures (timeouts under a lock, a full
// write queue, errors) are reported as degraded with their counts and do
// not take the node out: a slow or stalled database is every node's at
// once, and failing readiness would make the load balancer drop the whole
// fleet for a fault no other node could serve around, while the per-request
// deadline already answers each request quickly with a retryable 503.
func (h *storeHealth) check(ping func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := ping(ctx); err != nil {
			return err
		}
		calls, failed := h.recent()
		if calls >= storeHealthMinCalls && failed*2 >= calls {
			return degraded(fmt.Sprintf("%d of %d token-store calls failed or timed out in the last %ds", failed, calls, storeHealthWindow))
		}
		return nil
	}
}

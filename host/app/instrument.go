package app

import (
	"context"
	"errors"
	"time"

	"stellaops.org/authority/host/store"
	"stellaops.org/authority/host/telemetry"
)

// instrumentedStore records the latency and errors of every token store
// call (authority_store_operation_duration_seconds, authority_store_errors_total).
type instrumentedStore struct {
	store.TokenStore
	kind    string
	metrics *telemetry.Metrics
}

func (s instrumentedStore) observe(ctx context.Context, op string, start time.Time, err error) {
	s.metrics.StoreOperation(ctx, s.kind, op, time.Since(start), err)
}

func (s instrumentedStore) Put(ctx context.Context, t *store.Token) error {
	start := time.Now()
	err := s.TokenStore.Put(ctx, t)
	s.observe(ctx, "put", start, err)
	return err
}

func (s instrumentedStore) Get(ctx context.Context, id string) (*store.Token, error) {
	start := time.Now()
	t, err := s.TokenStore.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		s.observe(ctx, "get", start, nil) // an unknown token is an answer, not a failure
	} else {
		s.observe(ctx, "get", start, err)
	}
	return t, err
}

func (s instrumentedStore) Revoke(ctx context.Context, id string, at time.Time) (bool, error) {
	start := time.Now()
	ok, err := s.TokenStore.Revoke(ctx, id, at)
	s.observe(ctx, "revoke", start, err)
	return ok, err
}

func (s instrumentedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.TokenStore.Ping(ctx)
	s.observe(ctx, "ping", start, err)
	return err
}

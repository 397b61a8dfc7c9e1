package app

import (
	"context"
	"errors"
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

func (s instrumentedStore) Ping(ctx context.Context) error {
	ctx, end := s.begin(ctx, "ping")
	err := s.TokenStore.Ping(ctx)
	end(err)
	return err
}

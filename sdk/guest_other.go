//go:build !wasip1

package sdk

import (
	"time"

	"stellaops.org/authority/abi"
)

// Outside a wasip1 guest the host functions are unavailable; these stubs
// let a plugin's own logic compile and be unit-tested natively.

// Log does nothing outside a guest.
func Log(level int32, msg string) {}

// Metric returns ErrNotInGuest outside a guest.
func Metric(name string, delta int64) error { return ErrNotInGuest }

// Audit returns ErrNotInGuest outside a guest.
func Audit(ev *abi.Event) error { return ErrNotInGuest }

// CounterIncr returns ErrNotInGuest outside a guest.
func CounterIncr(key string, delta int64, window time.Duration) (int64, time.Duration, error) {
	return 0, 0, ErrNotInGuest
}

// CounterIncrMany returns ErrNotInGuest outside a guest.
func CounterIncrMany(ops []CounterOp, out []CounterResult) error { return ErrNotInGuest }

// KVGet returns ErrNotInGuest outside a guest.
func KVGet(key string) ([]byte, bool, error) { return nil, false, ErrNotInGuest }

// KVSet returns ErrNotInGuest outside a guest.
func KVSet(key string, val []byte, ttl time.Duration) error { return ErrNotInGuest }

// Pseudonymize returns ErrNotInGuest outside a guest.
func Pseudonymize(v string) (string, error) { return "", ErrNotInGuest }

// Now returns the local clock outside a guest.
func Now() time.Time { return time.Now().UTC() }

// Config returns nil outside a guest.
func Config() []byte { return nil }

package plugin

import (
	"testing"
	"time"
)

// TestCeilMillis: Redis TTLs are whole milliseconds, and a sub-millisecond
// remainder rounds up, so no TTL becomes 0 (which Redis refuses) or
// shorter than asked.
func TestCeilMillis(t *testing.T) {
	for d, want := range map[time.Duration]int64{
		time.Nanosecond: 1, time.Millisecond: 1, 2500 * time.Microsecond: 3,
		90 * time.Second: 90000, 90*time.Second + time.Nanosecond: 90001,
	} {
		if got := ceilMillis(d); got != want {
			t.Errorf("ceilMillis(%v) = %d, want %d", d, got, want)
		}
	}
}

package app_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/host/app"
)

// lockedBuffer is the writer under test's destination; it counts writes.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) snapshot() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.writes
}

// Lines logged together leave in one write, within the flush interval,
// whole and in order; Close writes out the rest at once.
func TestLogWriterBatchesLinesAndFlushes(t *testing.T) {
	dst := &lockedBuffer{}
	lw := app.NewLogWriter(dst, 20*time.Millisecond)
	log := app.NewLogger(lw, "info")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				log.Info("line", "g", g, "i", i)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second) // generous: the bound is 20 ms, a loaded machine is slow
	for {
		out, _ := dst.snapshot()
		if strings.Count(out, "\n") == 400 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 400 lines written after the flush interval", strings.Count(out, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	out, writes := dst.snapshot()
	if writes >= 400 {
		t.Fatalf("%d writes for 400 lines: not batched", writes)
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "}") {
			t.Fatalf("a torn line: %q", line)
		}
	}
	log.Info("last")
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	if out, _ := dst.snapshot(); !strings.Contains(out, `"msg":"last"`) {
		t.Fatal("Close did not write out the buffered line")
	}
}

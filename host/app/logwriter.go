package app

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// LogWriter batches log lines into fewer write system calls: a line is
// written at most flushEvery after it was logged, at once when the buffer
// fills, and on Close. Under load the request path logs several lines per
// token, and one write(2) per line cost more server CPU than the JSON
// encoding (docs/benchmarks.md). The price, stated: a process killed
// without Close loses at most flushEvery of log lines; the audit trail,
// which is what must survive, has its own durable writer.
type LogWriter struct {
	mu    sync.Mutex
	buf   *bufio.Writer
	timer *time.Timer // pending flush; nil when the buffer is empty
	every time.Duration
	err   error
}

// NewLogWriter buffers w's lines for at most every (50 ms when zero).
func NewLogWriter(w io.Writer, every time.Duration) *LogWriter {
	if every <= 0 {
		every = 50 * time.Millisecond
	}
	return &LogWriter{buf: bufio.NewWriterSize(w, 64<<10), every: every}
}

// Write takes one log line (slog hands over whole records).
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	if err == nil && l.timer == nil && l.buf.Buffered() > 0 {
		l.timer = time.AfterFunc(l.every, l.flushTimer)
	}
	return n, err
}

func (l *LogWriter) flushTimer() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	if err := l.buf.Flush(); err != nil && l.err == nil {
		l.err = err
	}
}

// Close writes out what is buffered and returns the first write error.
func (l *LogWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if err := l.buf.Flush(); err != nil && l.err == nil {
		l.err = err
	}
	return l.err
}

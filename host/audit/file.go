package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// MaxLineBytes is the longest line a FileStore reads back; a longer one is
// reported as malformed rather than read into memory.
const MaxLineBytes = 1 << 20

// FileStore is a JSON-lines audit file (audit.file): one record per line,
// appended with O_APPEND and fsync'd before Append returns. One process
// owns it at a time (an exclusive lock on FILE.lock).
type FileStore struct {
	path string
	mu   sync.Mutex
	f    *os.File
	lock *os.File
	size int64
	// heads caches each node's last position, filled by a scan at open.
	heads map[string]fileHead
	// buf is reused by Append for a batch's lines.
	buf []byte
	// broken is set when a failed write could not be cut back.
	broken error
	// purgeMu serializes purges (which run mostly without mu).
	purgeMu sync.Mutex
}

type fileHead struct {
	seq  uint64
	hash string
}

// OpenFile opens (creating, mode 0600 in a 0700 directory) the audit file
// at path. A torn last line, left by a crash in the middle of a write that
// was never acknowledged, is cut off.
func OpenFile(path string) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%s is in use by another process (%v): give every node its own audit.file", path, err)
	}
	s := &FileStore{path: path, lock: lock}
	if err := s.open(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

func (s *FileStore) open() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	heads := map[string]fileHead{}
	var good int64
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, n, err := readLine(r)
		if errors.Is(err, io.EOF) {
			break // what follows the last newline is torn
		}
		if err != nil && !errors.Is(err, errLineTooLong) {
			f.Close()
			return err
		}
		good += n
		if err == nil {
			var h struct {
				Node string `json:"node"`
				Seq  uint64 `json:"seq"`
			}
			if json.Unmarshal(line, &h) == nil && h.Node != "" && h.Seq > heads[h.Node].seq {
				heads[h.Node] = fileHead{seq: h.Seq, hash: Hash(line)}
			}
		}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if st.Size() > good {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return fmt.Errorf("cutting a torn last line: %w", err)
		}
	}
	s.f, s.size, s.heads = f, good, heads
	return nil
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline and how many bytes
// it took (newline included); io.EOF with what is left when the input
// ends without a newline; errLineTooLong (no line) for a line over
// MaxLineBytes, which is skipped.
func readLine(r *bufio.Reader) ([]byte, int64, error) {
	var buf []byte
	var n int64
	long := false
	for {
		chunk, err := r.ReadSlice('\n')
		n += int64(len(chunk))
		if !long && len(buf)+len(chunk) > MaxLineBytes+1 {
			long, buf = true, nil
		}
		if !long {
			buf = append(buf, chunk...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return buf, n, err
		case long:
			return nil, n, errLineTooLong
		default:
			return buf[:len(buf)-1], n, nil
		}
	}
}

// Append implements Store.
func (s *FileStore) Append(ctx context.Context, batch []Sealed) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return s.broken
	}
	if s.f == nil {
		return errors.New("audit: file store closed")
	}
	heads := map[string]fileHead{}
	size := 0
	for _, r := range batch {
		size += len(r.Line) + 1
	}
	if cap(s.buf) < size || cap(s.buf) > 4<<20 {
		s.buf = make([]byte, 0, max(size, 64<<10))
	}
	buf := bytes.NewBuffer(s.buf[:0])
	for _, r := range batch {
		h, ok := heads[r.Node]
		if !ok {
			h = s.heads[r.Node]
		}
		if r.Seq <= h.seq {
			return ErrConflict
		}
		heads[r.Node] = fileHead{seq: r.Seq, hash: r.Hash}
		buf.Write(r.Line)
		buf.WriteByte('\n')
	}
	n, err := s.f.Write(buf.Bytes())
	if err == nil {
		// fdatasync: the data and the size that makes it readable, not
		// the access times.
		err = syscall.Fdatasync(int(s.f.Fd()))
	}
	if err != nil {
		// Leave none of the batch: cut what was written of it. If even
		// that fails, the file's tail is unknown: refuse every write
		// until a restart rescans it.
		if terr := s.f.Truncate(s.size); terr != nil {
			s.broken = fmt.Errorf("audit file %s: a failed write could not be undone (%v); restart to rescan it", s.path, terr)
		}
		return fmt.Errorf("audit file %s: %w", s.path, err)
	}
	s.size += int64(n)
	for node, h := range heads {
		s.heads[node] = h
	}
	return nil
}

// Head implements Store.
func (s *FileStore) Head(_ context.Context, node string) (uint64, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return 0, "", errors.New("audit: file store closed")
	}
	h := s.heads[node]
	return h.seq, h.hash, nil
}

// Scan implements Store: the file's lines in order (Node and Seq empty: a
// file has no index to compare).
func (s *FileStore) Scan(ctx context.Context, fn func(Sealed) error) error {
	return scanFile(ctx, s.path, fn)
}

// ScanFile reads an audit file that no process needs to hold (audit
// verify on a copy).
func ScanFile(ctx context.Context, path string, fn func(Sealed) error) error {
	return scanFile(ctx, path, fn)
}

func scanFile(ctx context.Context, path string, fn func(Sealed) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return ScanLines(ctx, f, fn)
}

// ScanLines calls fn with every line of a JSON-lines audit stream (a line
// longer than MaxLineBytes arrives empty, and is reported as malformed by
// Verify).
func ScanLines(ctx context.Context, in io.Reader, fn func(Sealed) error) error {
	r := bufio.NewReaderSize(in, 64<<10)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, _, err := readLine(r)
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				return fn(Sealed{Line: line}) // a torn tail is reported by Verify
			}
			return nil
		}
		if err != nil && !errors.Is(err, errLineTooLong) {
			return err
		}
		if err := fn(Sealed{Line: line}); err != nil {
			return err
		}
	}
}

// lineHead is what Purge reads of each line.
type lineHead struct {
	Node       string    `json:"node"`
	Seq        uint64    `json:"seq"`
	Source     string    `json:"source"`
	EventType  string    `json:"eventType"`
	OccurredAt time.Time `json:"occurredAt"`
}

// scanPrefix calls fn with every line of the file's first size bytes.
func scanPrefix(ctx context.Context, path string, size int64, fn func(Sealed) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return ScanLines(ctx, io.LimitReader(f, size), fn)
}

// Purge implements Store by rewriting the file without the purged records
// (a temporary file, fsync'd, renamed over the old one). It streams: no
// per-record index is kept, and the file is rewritten only when a record
// goes. The copy runs without the store's lock, so Append goes on; only
// the records appended meanwhile are copied under it, before the rename.
func (s *FileStore) Purge(ctx context.Context, cutoff time.Time) (int64, error) {
	s.purgeMu.Lock()
	defer s.purgeMu.Unlock()
	s.mu.Lock()
	if s.f == nil {
		s.mu.Unlock()
		return 0, errors.New("audit: file store closed")
	}
	size0 := s.size
	s.mu.Unlock()

	// Pass 1: each node's bound (PurgeBounds) and its first sequence number.
	from, first := map[string]uint64{}, map[string]uint64{}
	err := scanPrefix(ctx, s.path, size0, func(r Sealed) error {
		var h lineHead
		if json.Unmarshal(r.Line, &h) != nil || h.Node == "" {
			return nil
		}
		if _, ok := first[h.Node]; !ok {
			first[h.Node] = h.Seq
		}
		if h.EventType == EventCheckpoint && h.Source == SourceHost && h.OccurredAt.Before(cutoff) && h.Seq > from[h.Node] {
			from[h.Node] = h.Seq
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	drops := false
	for node, bound := range from {
		drops = drops || first[node] < bound
	}
	if !drops {
		return 0, nil
	}

	// Pass 2: copy what is kept, without the lock.
	tmpPath := s.path + ".purge"
	tmp, err := os.OpenFile(tmpPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmpPath)
	defer tmp.Close()
	w := bufio.NewWriterSize(tmp, 64<<10)
	var n int64
	err = scanPrefix(ctx, s.path, size0, func(r Sealed) error {
		var h lineHead
		if json.Unmarshal(r.Line, &h) == nil && h.Node != "" && h.Seq < from[h.Node] {
			n++
			return nil
		}
		w.Write(r.Line)
		return w.WriteByte('\n')
	})
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return 0, err
	}

	// Under the lock: what was appended meanwhile (all of it newer than
	// the cutoff's checkpoints, so kept), then the swap.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return 0, errors.New("audit: file store closed")
	}
	if s.size > size0 {
		src, err := os.Open(s.path)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(tmp, io.NewSectionReader(src, size0, s.size-size0))
		src.Close()
		if err != nil {
			return 0, err
		}
	}
	if err := syscall.Fdatasync(int(tmp.Fd())); err != nil {
		return 0, err
	}
	st, err := tmp.Stat()
	if err != nil {
		return 0, err
	}
	if err := os.Rename(tmpPath, s.path); err != nil {
		return 0, err
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		s.f.Close()
		s.f = nil
		return n, err
	}
	s.f.Close()
	s.f, s.size = f, st.Size() // the heads are unchanged: a purge keeps every chain's last record
	return n, nil
}

// Ping implements Store.
func (s *FileStore) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("audit: file store closed")
	}
	_, err := s.f.Stat()
	return err
}

// Close implements Store.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	return err
}

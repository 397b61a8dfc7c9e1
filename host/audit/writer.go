package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons a record is dropped (authority_audit_records_dropped_total).
const (
	// DropQueueFull: the queue was full while the sink was healthy (the
	// node records faster than the sink writes).
	DropQueueFull = "queue-full"
	// DropSinkUnavailable: the queue was full because the sink is failing.
	DropSinkUnavailable = "sink-unavailable"
	// DropEncode: the record could not be built (pseudonymization failed).
	DropEncode = "encode"
	// DropClosed: the record arrived after Close, or Close gave up on it.
	DropClosed = "closed"
)

// Failure policies (audit.onFailure).
const (
	// OnFailureContinue: tokens are issued while the sink fails; lost
	// records are counted and /readyz notes it without failing.
	OnFailureContinue = "continue"
	// OnFailureRefuse: no token is handed out whose issuance record is not
	// durable; /token answers 503 while the sink fails, and /readyz fails.
	OnFailureRefuse = "refuse"
)

// ErrUnavailable: the audit sink cannot take records now (failing, or its
// queue is full).
var ErrUnavailable = errors.New("audit: the audit sink is unavailable")

// Observer counts what the writer does (host/telemetry implements it).
type Observer interface {
	AuditWritten(n int)
	AuditDropped(reason string, n int)
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Node names this node's chain; it must be unique among the nodes
	// sharing a sink and stable across restarts (the chain resumes).
	Node   string
	Store  Store
	Signer *Signer
	// Pseudonymizer turns personal data into pseudonyms; nil leaves it
	// out of the records.
	Pseudonymizer Pseudonymizer
	// QueueSize bounds the records waiting to be written (default 4096).
	QueueSize int
	// BatchMax is the most records written in one Append (default 512).
	BatchMax int
	// BatchWait is how long a batch may gather after its first record
	// (default 5 ms; negative: not at all). It bounds the extra latency of
	// a record and, under load, turns one write per record into one per
	// wait.
	BatchWait time.Duration
	// CheckpointInterval is how often a signed checkpoint is written,
	// records or not (default 1 minute).
	CheckpointInterval time.Duration
	// WriteTimeout bounds one Append (default 5 s); a failed Append is
	// retried with backoff while new records queue.
	WriteTimeout time.Duration
	Observer     Observer
	Log          *slog.Logger
	Now          func() time.Time
}

type item struct {
	ev   Event
	done chan error
}

// Writer is the host's audit trail: it seals events into its node's hash
// chain and writes them to a Store in batches (group commit: while one
// batch is being written, the next gathers). It implements Sink.
type Writer struct {
	o     WriterOptions
	queue chan item
	// flush cuts a batch wait short: a request waits for a record.
	flush chan struct{}

	mu     sync.RWMutex
	closed bool
	quit   chan struct{}
	exited chan struct{}

	// Chain state, owned by the run goroutine: the head sealed so far,
	// and the head the store has (what a batch given up on rewinds to).
	seq, durableSeq   uint64
	head, durableHead string

	failing atomic.Pointer[failure]
	drops   atomic.Int64
	// abandon is set, and stop cancelled, when Close runs out of time:
	// a pending write gives up and what is unwritten is dropped.
	abandon atomic.Bool
	stop    context.Context
	cancel  context.CancelFunc
}

type failure struct {
	since time.Time
	err   error
}

// NewWriter resumes node's chain from the store's head and starts writing.
func NewWriter(ctx context.Context, o WriterOptions) (*Writer, error) {
	if o.Node == "" || o.Store == nil || o.Signer == nil {
		return nil, errors.New("audit: a writer needs a node id, a store and a checkpoint signer")
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.BatchMax <= 0 {
		o.BatchMax = 512
	}
	if o.BatchWait == 0 {
		o.BatchWait = 5 * time.Millisecond
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	w := &Writer{o: o, queue: make(chan item, o.QueueSize), quit: make(chan struct{}), exited: make(chan struct{}),
		flush: make(chan struct{}, 1)}
	w.stop, w.cancel = context.WithCancel(context.Background())
	seq, head, err := o.Store.Head(ctx, o.Node)
	if err != nil {
		return nil, fmt.Errorf("audit: reading the head of chain %q: %w", o.Node, err)
	}
	w.seq, w.head, w.durableSeq, w.durableHead = seq, head, seq, head
	if seq > 0 {
		o.Log.Info("authority.audit.chain.resumed", "node", o.Node, "seq", seq)
	}
	go w.run()
	return w, nil
}

// Record implements Sink: it queues e and returns at once. A full queue or
// a closed writer drops it, counted by reason.
func (w *Writer) Record(_ context.Context, e Event) { w.enqueue(e, nil) }

// RecordDurable queues e and waits until it is durable in the store (or
// ctx ends, or the record is dropped). It returns ErrUnavailable without
// queuing when the sink is failing or the queue is full.
func (w *Writer) RecordDurable(ctx context.Context, e Event) error {
	if err := w.Admit(); err != nil {
		return err
	}
	done := make(chan error, 1)
	if !w.enqueue(e, done) {
		return ErrUnavailable
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

func (w *Writer) enqueue(e Event, done chan error) bool {
	if e.Time.IsZero() {
		e.Time = w.o.Now()
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.drop(DropClosed, 1)
		return false
	}
	select {
	case w.queue <- item{ev: e, done: done}:
		if done != nil {
			select {
			case w.flush <- struct{}{}:
			default:
			}
		}
		return true
	default:
		if w.failing.Load() != nil {
			w.drop(DropSinkUnavailable, 1)
		} else {
			w.drop(DropQueueFull, 1)
		}
		return false
	}
}

func (w *Writer) drop(reason string, n int) {
	w.drops.Add(int64(n))
	if w.o.Observer != nil {
		w.o.Observer.AuditDropped(reason, n)
	}
}

// Admit reports whether a record would be accepted now: nil, or
// ErrUnavailable (sink failing, queue full) with the cause.
func (w *Writer) Admit() error {
	if f := w.failing.Load(); f != nil {
		return fmt.Errorf("%w: failing since %s: %v", ErrUnavailable, f.since.UTC().Format(time.RFC3339), f.err)
	}
	if len(w.queue) >= cap(w.queue) {
		return fmt.Errorf("%w: queue full (%d records)", ErrUnavailable, cap(w.queue))
	}
	return nil
}

// Dropped is how many records this writer has dropped.
func (w *Writer) Dropped() int64 { return w.drops.Load() }

// QueueDepth is how many records wait to be written.
func (w *Writer) QueueDepth() int { return len(w.queue) }

// Node is the writer's chain id.
func (w *Writer) Node() string { return w.o.Node }

// Close stops taking records, writes what is queued and a final
// checkpoint, and waits for that until ctx ends; what is still unwritten
// then is dropped (DropClosed). It does not close the store.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.exited
		return nil
	}
	w.closed = true
	close(w.quit)
	w.mu.Unlock()
	select {
	case <-w.exited:
		return nil
	case <-ctx.Done():
		w.abandon.Store(true)
		w.cancel()
		<-w.exited
		return fmt.Errorf("audit: closing: %w", ctx.Err())
	}
}

func (w *Writer) run() {
	defer close(w.exited)
	defer w.cancel()
	tick := time.NewTicker(w.o.CheckpointInterval)
	defer tick.Stop()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	// The first checkpoint marks the (re)start and signs the head the
	// chain resumed from, before any new record.
	w.write(nil, true, false)
	for {
		var batch []item
		checkpoint, final := false, false
		select {
		case it := <-w.queue:
			batch = append(batch, it)
			// Let the batch gather for BatchWait: one wakeup and one write
			// per wait instead of one per record under load. Not when a
			// request waits for this record (audit.onFailure refuse): its
			// batch gathers while the previous one is written, and the
			// token answer is not held back.
			if it.done == nil && w.o.BatchWait > 0 && len(w.queue) < w.o.BatchMax-1 {
				wait.Reset(w.o.BatchWait)
				select {
				case <-wait.C:
				case <-w.flush:
					wait.Stop()
				case <-w.quit:
					wait.Stop()
				}
			}
		case <-tick.C:
			checkpoint = true
		case <-w.quit:
			checkpoint, final = true, true
		}
		batch = w.gather(batch, final)
		if !final {
			select {
			case <-w.quit:
				checkpoint, final = true, true
				batch = w.gather(batch, true)
			default:
			}
		}
		w.write(batch, checkpoint, final)
		if final {
			return
		}
	}
}

// gather adds what is queued to batch: up to BatchMax, or everything when
// the writer is closing.
func (w *Writer) gather(batch []item, all bool) []item {
	for all || len(batch) < w.o.BatchMax {
		select {
		case it := <-w.queue:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// pending is one record sealed into the chain, with its waiter.
type pending struct {
	rec  Record
	done chan error
	// checkpoint marks the writer's own checkpoints, the only records it
	// signs (never by EventType: an event may carry any type).
	checkpoint bool
}

func (w *Writer) write(items []item, checkpoint, final bool) {
	recs := make([]pending, 0, len(items)+1)
	for _, it := range items {
		r, err := NewRecord(it.ev, w.o.Pseudonymizer)
		if err != nil {
			w.drop(DropEncode, 1)
			w.o.Log.Error("authority.audit.record.dropped", "reason", DropEncode, "event_type", it.ev.Type, "error", err.Error())
			if it.done != nil {
				it.done <- fmt.Errorf("audit: %w", err)
			}
			continue
		}
		recs = append(recs, pending{rec: r, done: it.done})
	}
	if checkpoint {
		recs = append(recs, pending{rec: Record{Source: SourceHost, EventType: EventCheckpoint, OccurredAt: w.o.Now().UTC()}, checkpoint: true})
	}
	for start := 0; start < len(recs); start += w.o.BatchMax {
		end := min(start+w.o.BatchMax, len(recs))
		w.commit(recs[start:end], final && end == len(recs))
	}
}

// commit seals recs after the chain's head and appends them, retrying with
// backoff until the store takes them (or the writer is abandoned by
// Close). A retry first asks the store for the head: if the failed Append
// landed after all, it is not written twice; if someone else wrote at
// these positions, the chain is re-sealed after theirs (and logged).
func (w *Writer) commit(recs []pending, final bool) {
	if w.abandon.Load() {
		w.giveUp(recs, ErrUnavailable)
		return
	}
	batch, err := w.seal(recs, final)
	if err != nil {
		w.drop(DropEncode, len(recs))
		w.o.Log.Error("authority.audit.record.dropped", "reason", DropEncode, "records", len(recs), "error", err.Error())
		for _, p := range recs {
			if p.done != nil {
				p.done <- err
			}
		}
		return
	}
	backoff := 50 * time.Millisecond
	for {
		if err == nil {
			ctx, cancel := context.WithTimeout(w.stop, w.o.WriteTimeout)
			err = w.o.Store.Append(ctx, batch)
			cancel()
			if err == nil {
				break
			}
		}
		w.fail(err)
		if w.abandon.Load() {
			w.giveUp(recs, err)
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-w.stop.Done():
			t.Stop()
		}
		backoff = min(2*backoff, 2*time.Second)
		ctx, cancel := context.WithTimeout(w.stop, w.o.WriteTimeout)
		seq, head, herr := w.o.Store.Head(ctx, w.o.Node)
		cancel()
		if herr != nil {
			err = herr
			continue
		}
		last := batch[len(batch)-1]
		switch {
		case seq == last.Seq && head == last.Hash:
			err = nil // it landed
			goto done
		case seq == batch[0].Seq-1 && head == recs[0].rec.Prev:
			err = nil // nothing landed: append the same batch again
		default:
			w.o.Log.Error("authority.audit.chain.conflict", "node", w.o.Node, "expected_seq", batch[0].Seq-1, "store_seq", seq,
				"detail", "another writer uses this node id (audit.node); continuing after the store's head")
			w.seq, w.head = seq, head
			batch, err = w.seal(recs, final) // it encoded before: err is nil
		}
	}
done:
	last := batch[len(batch)-1]
	w.durableSeq, w.durableHead = last.Seq, last.Hash
	if w.failing.Swap(nil) != nil {
		w.o.Log.Info("authority.audit.sink.recovered", "node", w.o.Node)
	}
	for i, p := range recs {
		if p.done != nil {
			p.done <- nil
		}
		if p.checkpoint {
			// A copy outside the sink: a verifier can compare the sink's
			// checkpoints with the log's.
			w.o.Log.Info("authority.audit.checkpoint", "node", w.o.Node, "seq", batch[i].Seq, "head", p.rec.Prev,
				"hash", batch[i].Hash, "final", p.rec.Checkpoint.Final)
		}
	}
	if w.o.Observer != nil {
		w.o.Observer.AuditWritten(len(recs))
	}
}

// seal gives recs their chain positions after the head, encodes and hashes
// them, and advances the head.
func (w *Writer) seal(recs []pending, final bool) ([]Sealed, error) {
	out := make([]Sealed, len(recs))
	seq, head := w.seq, w.head
	for i := range recs {
		r := &recs[i].rec
		seq++
		r.Node, r.Seq, r.Prev = w.o.Node, seq, head
		if recs[i].checkpoint {
			w.o.Signer.sign(r, final && i == len(recs)-1)
		}
		line, err := MarshalRecord(r)
		if err != nil {
			return nil, err
		}
		head = Hash(line)
		out[i] = Sealed{Node: r.Node, Seq: r.Seq, Hash: head, Source: r.Source, EventType: r.EventType,
			Tenant: r.Tenant, OccurredAt: r.OccurredAt, Line: line}
	}
	w.seq, w.head = seq, head
	return out, nil
}

func (w *Writer) fail(err error) {
	if w.failing.CompareAndSwap(nil, &failure{since: w.o.Now(), err: err}) {
		w.o.Log.Error("authority.audit.sink.failed", "node", w.o.Node, "error", err.Error())
	}
}

func (w *Writer) giveUp(recs []pending, err error) {
	// Nothing after the store's head was written: the chain stays whole
	// (a record given up on leaves no gap, only a count).
	w.seq, w.head = w.durableSeq, w.durableHead
	w.drop(DropClosed, len(recs))
	w.o.Log.Error("authority.audit.record.dropped", "reason", DropClosed, "records", len(recs), "error", err.Error())
	for _, p := range recs {
		if p.done != nil {
			p.done <- fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	for {
		select {
		case it := <-w.queue:
			w.drop(DropClosed, 1)
			if it.done != nil {
				it.done <- ErrUnavailable
			}
		default:
			return
		}
	}
}

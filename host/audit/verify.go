package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Problem kinds Verify reports.
const (
	ProblemMalformed     = "malformed"      // not a record
	ProblemIndexMismatch = "index-mismatch" // the store's node/seq/hash columns disagree with the record
	ProblemEdited        = "edited"         // a record's content does not match the hash its successor carries
	ProblemMissing       = "missing"        // sequence numbers absent from a chain
	ProblemReordered     = "reordered"      // a record out of its chain's order
	ProblemDuplicate     = "duplicate"      // a chain position held twice
	ProblemCheckpoint    = "bad-checkpoint" // a checkpoint whose signature does not verify
	ProblemTruncated     = "truncated"      // a chain whose tail is cut (stale, not final)
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Keys are the trusted checkpoint keys (every node's, past and
	// present). A checkpoint signed by another key is a problem.
	Keys []ed25519.PublicKey
	// Now and MaxCheckpointAge detect a cut tail: a chain that does not end
	// with a final checkpoint and whose latest checkpoint is older than
	// MaxCheckpointAge at Now. Zero MaxCheckpointAge skips the check.
	Now              time.Time
	MaxCheckpointAge time.Duration
	// CheckRetention makes a chain that starts after purged records
	// acceptable only when its anchoring checkpoint is older than
	// Retention at Now (what a purge under audit.retention leaves); with
	// Retention 0 (keep forever) no chain may start after purged records.
	CheckRetention bool
	Retention      time.Duration
	// Expect are chain heads known from outside the sink (the logged
	// authority.audit.checkpoint lines): each must be in its chain with
	// that hash, so a tail cut back to an earlier final checkpoint, or
	// cut and then resumed by a restart, is found.
	Expect []Expected
}

// Expected is a record a chain must hold: node, seq and hex hash (the
// "node", "seq" and "hash" of an authority.audit.checkpoint log line).
type Expected struct {
	Node string
	Seq  uint64
	Hash string
}

// Problem is one break in a chain. Position is the record's 1-based place
// in the scan (the line number of a file).
type Problem struct {
	Kind     string `json:"kind"`
	Node     string `json:"node,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	Position int    `json:"position"`
	Detail   string `json:"detail"`
}

func (p Problem) String() string {
	if p.Node == "" {
		return fmt.Sprintf("record %d: %s: %s", p.Position, p.Kind, p.Detail)
	}
	return fmt.Sprintf("record %d (node %s, seq %d): %s: %s", p.Position, p.Node, p.Seq, p.Kind, p.Detail)
}

// ChainReport summarizes one node's chain.
type ChainReport struct {
	Node    string `json:"node"`
	Records int    `json:"records"`
	First   uint64 `json:"first"`
	Last    uint64 `json:"last"`
	// Anchored: the chain starts after purged records, at a signed
	// checkpoint.
	Anchored         bool      `json:"anchored,omitempty"`
	LastCheckpoint   uint64    `json:"lastCheckpoint,omitempty"`
	LastCheckpointAt time.Time `json:"lastCheckpointAt,omitzero"`
	// Final: the chain ends with a final checkpoint (its node stopped
	// cleanly and has not written since).
	Final bool `json:"final,omitempty"`
	// Unsealed is how many records follow the last checkpoint: they are
	// chained but no signature covers them yet.
	Unsealed int `json:"unsealed"`
}

// Report is Verify's answer: OK when Problems is empty. Problems are in
// scan order; the first is the first broken record.
type Report struct {
	Records  int           `json:"records"`
	Chains   []ChainReport `json:"chains"`
	Problems []Problem     `json:"problems,omitempty"`
}

// OK reports whether every chain verified.
func (r Report) OK() bool { return len(r.Problems) == 0 }

type chainState struct {
	rep      ChainReport
	lastHash string
	lastPos  int
	anchorAt time.Time
	// gaps maps a missing sequence number to the index of its problem, so
	// a record that turns up later is reported as reordered instead.
	gaps map[uint64]int
}

// Scanner is the part of a Store that Verify reads.
type Scanner interface {
	Scan(ctx context.Context, fn func(Sealed) error) error
}

// Verify reads every record of s and checks each node's chain: sequence
// numbers contiguous from 1 (or from a signed checkpoint left by a purge),
// each record's Prev the hash of the record before it, checkpoint
// signatures under opts.Keys, and (with opts.MaxCheckpointAge) a tail that
// ends in a recent or final checkpoint. An error is returned only when s
// cannot be read.
func Verify(ctx context.Context, s Scanner, opts VerifyOptions) (Report, error) {
	keys := map[string]ed25519.PublicKey{}
	for _, k := range opts.Keys {
		keys[KeyID(k)] = k
	}
	var rep Report
	chains := map[string]*chainState{}
	var order []string
	problem := func(p Problem) int {
		rep.Problems = append(rep.Problems, p)
		return len(rep.Problems) - 1
	}
	pos := 0
	seen := make([]bool, len(opts.Expect))
	err := s.Scan(ctx, func(sr Sealed) error {
		pos++
		rep.Records++
		var r Record
		if err := json.Unmarshal(sr.Line, &r); err != nil || r.Node == "" || r.Seq == 0 || r.EventType == "" {
			detail := "not an audit record"
			if err != nil {
				detail += ": " + err.Error()
			}
			problem(Problem{Kind: ProblemMalformed, Node: sr.Node, Seq: sr.Seq, Position: pos, Detail: detail})
			return nil
		}
		hash := Hash(sr.Line)
		for i, e := range opts.Expect {
			if e.Node == r.Node && e.Seq == r.Seq {
				seen[i] = true
				if e.Hash != hash {
					problem(Problem{Kind: ProblemEdited, Node: r.Node, Seq: r.Seq, Position: pos,
						Detail: "the record does not have the hash the expected (logged) checkpoint names"})
				}
			}
		}
		if sr.Node != "" && (sr.Node != r.Node || sr.Seq != r.Seq) {
			problem(Problem{Kind: ProblemIndexMismatch, Node: r.Node, Seq: r.Seq, Position: pos,
				Detail: fmt.Sprintf("stored as node %s seq %d but the record says node %s seq %d", sr.Node, sr.Seq, r.Node, r.Seq)})
		} else if col := indexDisagrees(sr, &r); col != "" {
			problem(Problem{Kind: ProblemIndexMismatch, Node: r.Node, Seq: r.Seq, Position: pos,
				Detail: "the stored " + col + " column disagrees with the record"})
		} else if sr.Hash != "" && sr.Hash != hash {
			problem(Problem{Kind: ProblemEdited, Node: r.Node, Seq: r.Seq, Position: pos,
				Detail: "the record does not match the hash stored beside it"})
		}
		c := chains[r.Node]
		if c == nil {
			c = &chainState{rep: ChainReport{Node: r.Node, First: r.Seq}, gaps: map[uint64]int{}}
			chains[r.Node] = c
			order = append(order, r.Node)
		}
		isCheckpoint := r.EventType == EventCheckpoint
		if isCheckpoint && r.Source != SourceHost {
			problem(Problem{Kind: ProblemCheckpoint, Node: r.Node, Seq: r.Seq, Position: pos,
				Detail: "a checkpoint whose source is " + strconvQuote(r.Source) + ": only the host writes checkpoints"})
			isCheckpoint = false
		} else if isCheckpoint && (r.Tenant != "" || r.Subject != "" || r.Client != "" || r.Outcome != "" || r.Reason != "" ||
			r.CorrelationID != "" || len(r.Scopes) > 0 || r.Network != nil || r.SenderConstraint != nil || len(r.Properties) > 0) {
			// The signature covers the chain position, not these fields: a
			// checkpoint carries none of them.
			problem(Problem{Kind: ProblemCheckpoint, Node: r.Node, Seq: r.Seq, Position: pos,
				Detail: "a checkpoint carrying event fields: it was edited"})
			isCheckpoint = false
		} else if isCheckpoint {
			if err := verifyCheckpoint(&r, keys); err != nil {
				problem(Problem{Kind: ProblemCheckpoint, Node: r.Node, Seq: r.Seq, Position: pos,
					Detail: err.Error() + ": the checkpoint, or a record before it (with the chain recomputed), was altered"})
				isCheckpoint = false
			}
		}
		switch last := c.rep.Last; {
		case last == 0 && c.rep.Records == 0:
			switch {
			case r.Seq == 1 && r.Prev != "":
				problem(Problem{Kind: ProblemEdited, Node: r.Node, Seq: r.Seq, Position: pos,
					Detail: "the first record of the chain names a predecessor"})
			case r.Seq > 1 && isCheckpoint:
				c.rep.Anchored, c.anchorAt = true, r.OccurredAt // earlier records purged by retention
				if opts.CheckRetention && (opts.Retention <= 0 || !r.OccurredAt.Before(opts.Now.Add(-opts.Retention))) {
					problem(Problem{Kind: ProblemMissing, Node: r.Node, Seq: r.Seq, Position: pos,
						Detail: fmt.Sprintf("the chain starts at checkpoint seq %d of %s: records 1..%d are gone, but retention (%s) would have kept them",
							r.Seq, r.OccurredAt.UTC().Format(time.RFC3339), r.Seq-1, retentionText(opts.Retention))})
				}
			case r.Seq > 1:
				c.gaps[1] = problem(Problem{Kind: ProblemMissing, Node: r.Node, Seq: r.Seq, Position: pos,
					Detail: fmt.Sprintf("the chain starts at seq %d without a checkpoint: records 1..%d are missing", r.Seq, r.Seq-1)})
			}
		case r.Seq == last+1:
			if r.Prev != c.lastHash {
				problem(Problem{Kind: ProblemEdited, Node: r.Node, Seq: last, Position: c.lastPos,
					Detail: fmt.Sprintf("record seq %d does not match the hash record seq %d carries: it was edited or replaced", last, r.Seq)})
			}
		case r.Seq > last+1:
			i := problem(Problem{Kind: ProblemMissing, Node: r.Node, Seq: last + 1, Position: pos,
				Detail: fmt.Sprintf("records %d..%d of the chain are missing (seq %d follows %d)", last+1, r.Seq-1, r.Seq, last)})
			for s := last + 1; s < r.Seq && s < last+1+1024; s++ {
				c.gaps[s] = i
			}
		default: // r.Seq <= last
			if i, ok := c.gaps[r.Seq]; ok {
				delete(c.gaps, r.Seq)
				rep.Problems[i] = Problem{Kind: ProblemReordered, Node: r.Node, Seq: r.Seq, Position: rep.Problems[i].Position,
					Detail: fmt.Sprintf("record seq %d is stored after record seq %d", r.Seq, last)}
			} else {
				problem(Problem{Kind: ProblemDuplicate, Node: r.Node, Seq: r.Seq, Position: pos,
					Detail: fmt.Sprintf("a second record at seq %d (after seq %d)", r.Seq, last)})
			}
			c.rep.Records++
			return nil // the chain continues from the later record
		}
		c.rep.Records++
		c.rep.Last, c.lastHash, c.lastPos = r.Seq, hash, pos
		if isCheckpoint {
			c.rep.LastCheckpoint, c.rep.LastCheckpointAt, c.rep.Unsealed = r.Seq, r.OccurredAt, 0
			c.rep.Final = r.Checkpoint.Final
		} else {
			c.rep.Unsealed++
			c.rep.Final = false
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	for i, e := range opts.Expect {
		if !seen[i] {
			last := uint64(0)
			if c := chains[e.Node]; c != nil {
				last = c.rep.Last
			}
			problem(Problem{Kind: ProblemTruncated, Node: e.Node, Seq: e.Seq, Position: max(pos, 1),
				Detail: fmt.Sprintf("the expected record seq %d is not in the chain (which ends at seq %d): its tail was cut", e.Seq, last)})
		}
	}
	for _, n := range order {
		c := chains[n]
		if c.rep.LastCheckpoint == 0 && c.rep.Records > 0 {
			problem(Problem{Kind: ProblemCheckpoint, Node: n, Seq: c.rep.Last, Position: pos,
				Detail: "the chain has no valid checkpoint: nothing signed vouches for it (a node writes one at start)"})
		}
		if opts.MaxCheckpointAge > 0 && !c.rep.Final {
			at := c.rep.LastCheckpointAt
			if at.IsZero() || opts.Now.Sub(at) > opts.MaxCheckpointAge {
				when := "no checkpoint at all"
				if !at.IsZero() {
					when = "its last checkpoint (seq " + fmt.Sprint(c.rep.LastCheckpoint) + ") is from " + at.UTC().Format(time.RFC3339)
				}
				problem(Problem{Kind: ProblemTruncated, Node: n, Seq: c.rep.Last, Position: pos,
					Detail: "the chain does not end with a final checkpoint and " + when +
						": its tail was cut off, or the node stopped uncleanly and has not resumed"})
			}
		}
		rep.Chains = append(rep.Chains, c.rep)
	}
	slices.SortStableFunc(rep.Problems, func(a, b Problem) int { return a.Position - b.Position })
	return rep, nil
}

// indexDisagrees names a column a store keeps beside the record (Source,
// EventType, Tenant, OccurredAt: what queries and retention read) that
// says something else than the record; "" when all agree or are not kept.
func indexDisagrees(sr Sealed, r *Record) string {
	switch {
	case sr.Source != "" && sr.Source != r.Source:
		return "source"
	case sr.EventType != "" && sr.EventType != r.EventType:
		return "event_type"
	case sr.Tenant != r.Tenant && sr.Node != "":
		return "tenant"
	case !sr.OccurredAt.IsZero() && (sr.OccurredAt.Sub(r.OccurredAt) >= time.Microsecond || r.OccurredAt.Sub(sr.OccurredAt) >= time.Microsecond):
		return "occurred_at" // (PostgreSQL keeps microseconds: a rounding is no disagreement)
	}
	return ""
}

func retentionText(d time.Duration) string {
	if d <= 0 {
		return "keep forever"
	}
	return d.String()
}

func strconvQuote(s string) string { return strconv.Quote(s) }

package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"stellaops.org/authority/abi"
)

// The longest network prefixes a record may hold instead of a pseudonym
// of the address (tenants[].audit.ipv4Prefix / ipv6Prefix, SEC2's).
const (
	MaxIPv4Prefix = 24
	MaxIPv6Prefix = 64
)

// EventCheckpoint is the type of a chain checkpoint record: the node's
// signature over its chain's head (see Checkpoint).
const EventCheckpoint = "authority.audit.checkpoint"

// Record is one durable audit record, the line of a JSON-lines file or the
// body of an authority_audit row. Its JSON encoding (MarshalRecord) is what
// is hashed: each record carries its node's chain position (Node, Seq) and
// the SHA-256 of the previous record of that chain (Prev), so an edited,
// missing or reordered record breaks the chain (Verify).
//
// Personal data never appears raw: Subject, Network.IP and
// Network.UserAgent are pseudonyms (or a truncated network) made by the
// host with the tenant's key before the record is sealed; secrets, tokens,
// proofs and certificates appear only as thumbprints.
type Record struct {
	Node string `json:"node"`
	Seq  uint64 `json:"seq"`
	// Prev is hex SHA-256 of the previous record's encoding; empty for
	// the first record of a chain.
	Prev string `json:"prev"`
	// Source is "host" or "plugin:<name>".
	Source string `json:"source"`
	// EventType is "authority.<surface>.<action>".
	EventType     string    `json:"eventType"`
	OccurredAt    time.Time `json:"occurredAt"`
	CorrelationID string    `json:"correlationId,omitempty"`
	Tenant        string    `json:"tenant,omitempty"`
	// Outcome is success, failure, locked_out, rate_limited or error.
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Subject is the subject's pseudonym.
	Subject string   `json:"subject,omitempty"`
	Client  string   `json:"client,omitempty"`
	Scopes  []string `json:"scopes,omitempty"`
	// Network is where the request came from, pseudonymized.
	Network          *Network          `json:"network,omitempty"`
	SenderConstraint *SenderConstraint `json:"senderConstraint,omitempty"`
	// Properties are further facts: the token's jti, the policy plugins'
	// annotations ("annotation.<plugin>.<key>"), a plugin record's
	// attributes.
	Properties map[string]string `json:"properties,omitempty"`
	// Checkpoint is set on EventCheckpoint records only.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
}

// Network is a record's network origin: IP is the pseudonym of the client
// address, or its truncated network ("203.0.113.0/24") when the tenant
// chose truncation; UserAgent is the user agent's pseudonym.
type Network struct {
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
}

// SenderConstraint is how the request was bound (abi/SPEC.md §4.2-4.4):
// Kind is none, dpop, mtls, dpop+mtls or bypass; JKT the DPoP key
// thumbprint; X5tS256 the certificate thumbprint; Nonce the DPoP nonce
// status; DPoP and MTLS the native results.
type SenderConstraint struct {
	Kind    string `json:"kind"`
	JKT     string `json:"jkt,omitempty"`
	X5tS256 string `json:"x5t#S256,omitempty"`
	Alg     string `json:"alg,omitempty"`
	Nonce   string `json:"nonce,omitempty"`
	DPoP    string `json:"dpop,omitempty"`
	MTLS    string `json:"mtls,omitempty"`
}

// Checkpoint is a node's signed statement that its chain, up to the record
// before this one, has the head Prev: an Ed25519 signature (KeyID names the
// key) over CheckpointMessage. Nodes write one every
// audit.checkpointInterval and a Final one when they stop, so Verify
// detects an edit even when the chain hashes were recomputed, and a tail
// cut off after the last checkpoint.
type Checkpoint struct {
	KeyID string `json:"keyId"`
	// Final marks the last record a node wrote before a clean stop.
	Final bool `json:"final,omitempty"`
	// Signature is base64url (unpadded).
	Signature string `json:"signature"`
}

// MarshalRecord is the canonical encoding of r: what encoding/json writes
// for the struct (fields in declaration order, map keys sorted), no
// trailing newline, produced by a hand-written encoder (appendRecord). The
// chain hashes exactly these bytes.
func MarshalRecord(r *Record) ([]byte, error) { return appendRecord(make([]byte, 0, 512), r), nil }

// Hash is hex SHA-256 of an encoded record, the Prev of the next one.
func Hash(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// CheckpointMessage is what a checkpoint signs: a domain string, the node,
// the checkpoint's own sequence number, the head it vouches for (its
// Prev), its time and whether it is final. The head covers, through the
// chain, every earlier record.
func CheckpointMessage(node string, seq uint64, prev string, at time.Time, final bool) []byte {
	b := make([]byte, 0, 64+len(node)+len(prev))
	b = append(b, "authority.audit.checkpoint.v1\x00"...)
	b = append(b, node...)
	b = append(b, 0)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, 0)
	b = append(b, prev...)
	b = append(b, 0)
	b = at.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, 0)
	b = strconv.AppendBool(b, final)
	return b
}

// Signer signs checkpoints with an Ed25519 key.
type Signer struct {
	key   ed25519.PrivateKey
	KeyID string
}

// NewSigner wraps key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, KeyID: KeyID(key.Public().(ed25519.PublicKey))}
}

// KeyID names a checkpoint key: the first 16 bytes of SHA-256 of the raw
// public key, hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:16])
}

// sign fills r.Checkpoint for r's position.
func (s *Signer) sign(r *Record, final bool) {
	sig := ed25519.Sign(s.key, CheckpointMessage(r.Node, r.Seq, r.Prev, r.OccurredAt, final))
	r.Checkpoint = &Checkpoint{KeyID: s.KeyID, Final: final, Signature: base64.RawURLEncoding.EncodeToString(sig)}
}

// verifyCheckpoint checks r's signature against keys (by KeyID).
func verifyCheckpoint(r *Record, keys map[string]ed25519.PublicKey) error {
	c := r.Checkpoint
	if c == nil {
		return errors.New("checkpoint record without a checkpoint")
	}
	pub, ok := keys[c.KeyID]
	if !ok {
		return fmt.Errorf("checkpoint signed by unknown key %q", c.KeyID)
	}
	sig, err := base64.RawURLEncoding.DecodeString(c.Signature)
	if err != nil || !ed25519.Verify(pub, CheckpointMessage(r.Node, r.Seq, r.Prev, r.OccurredAt, c.Final), sig) {
		return errors.New("checkpoint signature does not verify")
	}
	return nil
}

// Constraint maps what a host event says about the sender constraint onto
// the ABI's words (abi/SPEC.md §4.2, §4.3, §4.6): a bound token's key and
// certificate passed the native checks (ok); a replayed proof, a bypass
// and a certificate mismatch say so. The plugins' events and the durable
// records use it alike.
func Constraint(e Event) (string, abi.DPoP, abi.MTLS) {
	sc := e.SenderConstraint
	jkt, x5t := sc["jkt"], sc["x5t#S256"]
	switch e.Type {
	case abi.EventDPoPReplay:
		return abi.ConstraintDPoP, abi.DPoP{Present: true, Result: abi.DPoPReplay, JKT: jkt, Alg: sc["alg"]}, abi.MTLS{}
	case abi.EventDPoPBypass:
		return abi.ConstraintBypass, abi.DPoP{Result: abi.DPoPBypass}, abi.MTLS{}
	case abi.EventDPoPNonceMiss:
		return abi.ConstraintDPoP, abi.DPoP{Present: sc["present"] == "true", Result: abi.DPoPNonceMiss, JKT: jkt,
			Alg: sc["alg"], NonceStatus: sc["nonce"]}, abi.MTLS{}
	case abi.EventMTLSBindingMismatch:
		// x5t is the token's binding; Reason is the native result.
		m := abi.MTLS{Present: e.Reason == abi.MTLSThumbprintMismatch, Thumbprint: x5t, Result: e.Reason}
		return abi.ConstraintMTLS, abi.DPoP{}, m
	}
	var d abi.DPoP
	var m abi.MTLS
	kind := abi.ConstraintNone
	if jkt != "" {
		d = abi.DPoP{Present: true, Valid: true, Result: abi.DPoPOK, JKT: jkt, Alg: sc["alg"], NonceStatus: sc["nonce"]}
		kind = abi.ConstraintDPoP
	}
	if x5t != "" {
		m = abi.MTLS{Present: true, Thumbprint: x5t, Result: abi.MTLSOK}
		kind = map[bool]string{true: abi.ConstraintDPoPMTLS, false: abi.ConstraintMTLS}[jkt != ""]
	}
	if sc["bypass"] == "true" {
		kind, d = abi.ConstraintBypass, abi.DPoP{Result: abi.DPoPBypass}
	}
	if r := sc["dpop"]; r != "" && jkt == "" {
		// A refused DPoP request: the native result, no binding.
		d = abi.DPoP{Present: r != abi.DPoPMissing && r != abi.DPoPBypass, Result: r}
	}
	return kind, d, m
}

// Pseudonymizer turns a tenant's personal data into what a record may
// hold: Pseudonym is the keyed pseudonym of v (abi/SPEC.md §5
// pseudonymize, the same value a plugin gets), Network the client address
// as the tenant chose to record it (pseudonym or truncated network).
type Pseudonymizer interface {
	Pseudonym(tenant, v string) (string, error)
	Network(tenant, addr string) (string, error)
}

// NewRecord converts a host or plugin event into a record (without its
// chain position), pseudonymizing its personal data with p. With p nil,
// the personal data is left out: a record never holds it raw.
func NewRecord(e Event, p Pseudonymizer) (Record, error) {
	if strings.HasPrefix(e.Type, abi.HostOnlyEventPrefix) {
		return Record{}, fmt.Errorf("event type %q is the audit trail's own", e.Type)
	}
	r := Record{Source: e.Source, EventType: e.Type, OccurredAt: e.Time.UTC(), CorrelationID: e.CorrelationID,
		Tenant: e.Tenant, Outcome: e.Outcome, Reason: e.Reason, Client: e.Client, Scopes: e.Scopes}
	if r.Source == "" {
		r.Source = SourceHost
	}
	pseudo := func(v string, f func(string, string) (string, error)) (string, error) {
		if v == "" || p == nil {
			return "", nil
		}
		if r.Source != SourceHost && looksPseudonymized(v) {
			return v, nil // a plugin's record, pseudonymized by the plugin
		}
		return f(e.Tenant, v)
	}
	var err error
	var pseudonym, network func(string, string) (string, error)
	if p != nil {
		pseudonym, network = p.Pseudonym, p.Network
	}
	if r.Subject, err = pseudo(e.Subject, pseudonym); err != nil {
		return r, err
	}
	var n Network
	if n.IP, err = pseudo(e.RemoteAddr, network); err != nil {
		return r, err
	}
	if n.UserAgent, err = pseudo(e.UserAgent, pseudonym); err != nil {
		return r, err
	}
	if n != (Network{}) {
		r.Network = &n
	}
	kind, d, m := Constraint(e)
	if e.ConstraintKind != "" {
		kind, d, m = e.ConstraintKind, e.DPoP, e.MTLS
	}
	if kind != abi.ConstraintNone && kind != "" || d.Result != "" || m.Result != "" {
		r.SenderConstraint = &SenderConstraint{Kind: kind, JKT: d.JKT, X5tS256: m.Thumbprint, Alg: d.Alg,
			Nonce: d.NonceStatus, DPoP: d.Result, MTLS: m.Result}
	}
	var props map[string]string
	set := func(k, v string) {
		if props == nil {
			props = make(map[string]string, 1+len(e.Annotations)+len(e.Properties))
		}
		props[k] = v
	}
	if e.TokenID != "" {
		set("jti", e.TokenID)
	}
	for k, v := range e.SenderConstraint {
		switch k {
		case "jkt", "x5t#S256", "alg", "bypass", "nonce", "present":
		default:
			set("senderConstraint."+k, v) // a proof's jti and htu, the endpoint of a mismatch
		}
	}
	for k, v := range e.Annotations {
		set("annotation."+k, v)
	}
	for k, v := range e.Properties {
		set(k, v)
	}
	r.Properties = props
	return r, nil
}

// looksPseudonymized reports whether a plugin's value is a pseudonym (43
// bytes of canonical base64url, what pseudonymize returns) or a network of
// at most /24 (IPv4) or /64 (IPv6) with its host bits cleared
// ("203.0.113.0/24"; never an IPv4-mapped one). Anything else in a
// plugin's subject, address or user agent is pseudonymized by the host. A
// 43-character value that happens to be canonical base64url cannot be told
// from a pseudonym; the SEC2 plugin only ever sends pseudonyms there.
func looksPseudonymized(v string) bool {
	if len(v) == 43 {
		if _, err := base64.RawURLEncoding.Strict().DecodeString(v); err == nil {
			return true
		}
	}
	pfx, err := netip.ParsePrefix(v)
	if err != nil || pfx != pfx.Masked() || pfx.Addr().Is4In6() || pfx.Addr().Zone() != "" {
		return false
	}
	if pfx.Addr().Is4() {
		return pfx.Bits() <= MaxIPv4Prefix
	}
	return pfx.Bits() <= MaxIPv6Prefix
}

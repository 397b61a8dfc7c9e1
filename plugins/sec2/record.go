package main

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

// hostFuncs are the host functions SEC2 uses. The wasip1 build wires them
// to the SDK (guest_wasip1.go); unit tests to fakes.
type hostFuncs struct {
	// config returns the tenant's configuration document (JSON), nil for none.
	config func() []byte
	// pseudonymize returns the host's keyed pseudonym of a value.
	pseudonymize func(string) (string, error)
	// audit writes a record; sdk.ErrLimited means "dropped by the budget".
	audit func(*abi.Event) error
	// logError reports a configuration error once (may be nil).
	logError func(string)
}

// Limits SEC2 keeps to so that the host never refuses a record as invalid
// (abi.ValidateEvent) or too large to hash (abi/SPEC.md §5).
const (
	// maxPseudonymInput is the pseudonymize host function's input limit.
	maxPseudonymInput = 4 << 10
	// markerKey is the attribute that lists what SEC2 had to leave out of
	// a record to keep it within the ABI's limits.
	markerKey = "sec2.incomplete"
)

// recorder turns host events into SEC2 records. One per instance: the
// configuration is parsed at the first event and kept (with its error),
// and the record's buffers are reused from event to event.
type recorder struct {
	host hostFuncs

	loaded bool
	cfg    *config
	cfgErr error

	rec        abi.Event
	scopes     []string
	attrs      []abi.KV
	incomplete []string
}

// hostError is a host function failure that cost the record.
type hostError struct {
	op  string
	err error
}

func (e *hostError) Error() string {
	return "sec2: " + e.op + ": " + e.err.Error() + "; record dropped"
}
func (e *hostError) Unwrap() error { return e.err }

// errEventType is returned for an event whose type no audit record can
// carry (the host sends only "authority." types).
var errEventType = errors.New("sec2: event type is not authority.<surface>.<action> in [a-z0-9_.-]; not recorded")

// load returns the configuration, parsing it at the first call. An
// invalid configuration is reported once through logError and returned
// as the error of every event: SEC2 records nothing rather than record
// under defaults the operator did not choose.
func (r *recorder) load() (*config, error) {
	if !r.loaded {
		r.loaded = true
		r.cfg, r.cfgErr = parseConfig(r.host.config())
		if r.cfgErr != nil && r.host.logError != nil {
			r.host.logError(r.cfgErr.Error() + "; no record is written until the configuration is fixed")
		}
	}
	return r.cfg, r.cfgErr
}

// handle records ev when the configuration selects it: one audit record,
// built field by field from what SEC2 knows (nothing unknown is copied),
// with personal data pseudonymized by the host. A record dropped by the
// host's audit budget is not an error; a failed pseudonymization or
// audit write is (and no record, raw or partial, is written).
func (r *recorder) handle(ev *abi.Event) error {
	cfg, err := r.load()
	if err != nil {
		return err
	}
	if !validType(ev.Type) {
		return errEventType
	}
	if !cfg.selects(ev.Type, ev.Outcome) {
		return nil
	}
	r.incomplete = r.incomplete[:0]
	rec := &r.rec
	*rec = abi.Event{
		Type:             ev.Type,
		Time:             ev.Time,
		CorrelationID:    r.clamp("correlationId", ev.CorrelationID),
		Tenant:           ev.Tenant,
		Outcome:          r.clamp("outcome", ev.Outcome),
		Reason:           r.clamp("reason", ev.Reason),
		SenderConstraint: r.clamp("senderConstraint", ev.SenderConstraint),
		DPoP: abi.DPoP{
			Present:     ev.DPoP.Present,
			Valid:       ev.DPoP.Valid,
			Result:      r.clamp("dpop.result", ev.DPoP.Result),
			JKT:         r.clamp("dpop.jkt", ev.DPoP.JKT),
			Alg:         r.clamp("dpop.alg", ev.DPoP.Alg),
			NonceStatus: r.clamp("dpop.nonceStatus", ev.DPoP.NonceStatus),
		},
		MTLS: abi.MTLS{
			Present:    ev.MTLS.Present,
			Thumbprint: r.clamp("mtls.thumbprint", ev.MTLS.Thumbprint),
			Result:     r.clamp("mtls.result", ev.MTLS.Result),
		},
	}
	if rec.Subject, err = r.pseudonym("subject", ev.Subject); err != nil {
		return err
	}
	if cfg.hashClient {
		if rec.Client, err = r.pseudonym("client", ev.Client); err != nil {
			return err
		}
	} else {
		rec.Client = r.clamp("client", ev.Client)
	}
	if rec.RemoteAddr, err = r.network(cfg, ev.RemoteAddr); err != nil {
		return err
	}
	if !cfg.omitUserAgent {
		if rec.UserAgent, err = r.pseudonym("userAgent", ev.UserAgent); err != nil {
			return err
		}
	}
	rec.Scopes = r.sortedScopes(ev.Scopes)
	rec.Attributes = r.attributes(cfg, ev.Attributes)
	err = r.host.audit(rec)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sdk.ErrLimited):
		// Dropped by the operator's audit budget; the host counts it
		// (authority_plugin_audit_limited_total). Carry on.
		return nil
	default:
		return &hostError{"audit_emit", err}
	}
}

// clamp returns s cut to abi.MaxEventFieldLen bytes, noting the cut.
func (r *recorder) clamp(field, s string) string {
	if len(s) <= abi.MaxEventFieldLen {
		return s
	}
	r.note(field, "truncated")
	return s[:abi.MaxEventFieldLen]
}

func (r *recorder) note(field, what string) {
	r.incomplete = append(r.incomplete, field+":"+what)
}

// pseudonym returns the host's pseudonym of v ("" for ""). A value beyond
// the host function's input limit is left out and noted: it is never
// copied raw, and an attacker's 30 KiB user agent must not cost the
// record.
func (r *recorder) pseudonym(field, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if len(v) > maxPseudonymInput {
		r.note(field, "unhashable")
		return "", nil
	}
	p, err := r.host.pseudonymize(v)
	if err != nil {
		return "", &hostError{"pseudonymize " + field, err}
	}
	return p, nil
}

// network applies the configured network mode to the client address.
func (r *recorder) network(cfg *config, addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	switch cfg.network {
	case networkOmit:
		return "", nil
	case networkTruncate:
		if p, ok := truncateAddr(addr, cfg.ipv4Bits, cfg.ipv6Bits); ok {
			return p, nil
		}
		// Not an address: hashed, never passed on raw.
	}
	return r.pseudonym("remoteAddr", addr)
}

// sortedScopes copies the valid scope-tokens of scopes (the input is never
// modified), sorts them and keeps at most abi.MaxEventScopes.
func (r *recorder) sortedScopes(scopes []string) []string {
	r.scopes = r.scopes[:0]
	dropped := 0
	for _, s := range scopes {
		if validScope(s) {
			r.scopes = append(r.scopes, s)
		} else {
			dropped++
		}
	}
	slices.Sort(r.scopes)
	if len(r.scopes) > abi.MaxEventScopes {
		dropped += len(r.scopes) - abi.MaxEventScopes
		r.scopes = r.scopes[:abi.MaxEventScopes]
	}
	if dropped > 0 {
		r.note("scopes", "dropped="+strconv.Itoa(dropped))
	}
	if len(r.scopes) == 0 {
		return nil
	}
	return r.scopes
}

// attributes builds the record's attributes: the event's "jti" and, when
// configured, its "annotation.*" attributes, in the event's order; then
// the tenant's properties ("property.*", sorted); then, when anything had
// to be left out, the marker attribute. Any other attribute of the event
// is not copied: SEC2 records only what it knows to be safe. The result
// respects abi.MaxEventAttributes; attributes beyond it (the event's last
// annotations first) are dropped and counted in the marker.
func (r *recorder) attributes(cfg *config, in []abi.KV) []abi.KV {
	r.attrs = r.attrs[:0]
	dropped := 0
	for _, kv := range in {
		if kv.Key != "jti" && !(cfg.annotations && strings.HasPrefix(kv.Key, "annotation.")) {
			continue
		}
		if !validKV(kv) {
			dropped++
			continue
		}
		r.attrs = append(r.attrs, kv)
	}
	marker := dropped > 0 || len(r.incomplete) > 0
	room := abi.MaxEventAttributes - len(cfg.properties)
	if marker {
		room--
	}
	if len(r.attrs) > room {
		if !marker {
			marker = true
			room--
		}
		dropped += len(r.attrs) - room
		r.attrs = r.attrs[:room]
	}
	if dropped > 0 {
		r.note("attributes", "dropped="+strconv.Itoa(dropped))
	}
	r.attrs = append(r.attrs, cfg.properties...)
	if marker {
		r.attrs = append(r.attrs, abi.KV{Key: markerKey, Value: markerValue(r.incomplete)})
	}
	if len(r.attrs) == 0 {
		return nil
	}
	return r.attrs
}

// markerValue joins the notes with spaces, within abi.MaxValueLen (whole
// notes only, then "...").
func markerValue(notes []string) string {
	v := strings.Join(notes, " ")
	if len(v) <= abi.MaxValueLen {
		return v
	}
	cut := strings.LastIndexByte(v[:abi.MaxValueLen-len(" ...")+1], ' ')
	if cut < 0 {
		return "..."
	}
	return v[:cut] + " ..."
}

// validScope reports whether s is an RFC 6749 §3.3 scope-token audit_emit
// accepts: 1 to abi.MaxEventScopeLen bytes of %x21 / %x23-5B / %x5D-7E.
func validScope(s string) bool {
	if s == "" || len(s) > abi.MaxEventScopeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// validKV reports whether kv is an attribute audit_emit accepts.
func validKV(kv abi.KV) bool {
	return kv.Key != "" && len(kv.Key) <= abi.MaxKeyLen && abi.KeyChars(kv.Key) &&
		len(kv.Value) <= abi.MaxValueLen && abi.Printable(kv.Value)
}

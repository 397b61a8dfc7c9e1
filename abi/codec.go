package abi

import (
	"encoding/binary"
	"errors"
	"strconv"
	"time"
	"unsafe"
)

// Message kinds: the first byte of every encoded message.
const (
	KindDecisionInput byte = 1
	KindDecision      byte = 2
	KindEvent         byte = 3
)

// Decoding errors. Every error returned by a Decode* function is a
// *DecodeError wrapping one of these.
var (
	// ErrTruncated means the input ended inside a field.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed means a field's bytes are not a canonical encoding.
	ErrMalformed = errors.New("malformed")
	// ErrKind means the message kind byte is not the one expected.
	ErrKind = errors.New("wrong message kind")
	// ErrVersion means the message carries an unsupported ABI version.
	ErrVersion = errors.New("unsupported abi version")
	// ErrTrailing means bytes follow the last field of the message.
	ErrTrailing = errors.New("trailing bytes")
)

// DecodeError locates a decoding failure.
type DecodeError struct {
	// Field is the dotted name of the field being decoded.
	Field string
	// Offset is the byte offset at which the field started.
	Offset int
	// Err is one of ErrTruncated, ErrMalformed, ErrKind, ErrVersion, ErrTrailing.
	Err error
}

func (e *DecodeError) Error() string {
	return "abi: " + e.Field + " at offset " + strconv.Itoa(e.Offset) + ": " + e.Err.Error()
}

// Unwrap returns the underlying sentinel error.
func (e *DecodeError) Unwrap() error { return e.Err }

// ---- encoding ----

// appendUvarint inlines the one-byte case (almost every length).
func appendUvarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return appendUvarintSlow(b, v)
}

func appendUvarintSlow(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendStrings(b []byte, ss []string) []byte {
	b = appendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func appendKVs(b []byte, kvs []KV) []byte {
	b = appendUvarint(b, uint64(len(kvs)))
	for _, kv := range kvs {
		b = appendString(b, kv.Key)
		b = appendString(b, kv.Value)
	}
	return b
}

func appendTime(b []byte, t time.Time) []byte {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	return binary.LittleEndian.AppendUint64(b, uint64(n))
}

func appendDPoP(b []byte, d *DPoP) []byte {
	b = appendBool(b, d.Present)
	b = appendBool(b, d.Valid)
	b = appendString(b, d.Result)
	b = appendString(b, d.JKT)
	b = appendString(b, d.Alg)
	return appendString(b, d.NonceStatus)
}

func appendMTLS(b []byte, m *MTLS) []byte {
	b = appendBool(b, m.Present)
	b = appendString(b, m.Thumbprint)
	return appendString(b, m.Result)
}

// AppendDecisionInput appends the canonical encoding of in to dst and
// returns the extended buffer. It never fails.
func AppendDecisionInput(dst []byte, in *DecisionInput) []byte {
	b := append(dst, KindDecisionInput, Version)
	b = appendString(b, in.Endpoint)
	b = appendString(b, in.Tenant)
	b = appendString(b, in.CorrelationID)
	b = appendTime(b, in.Time)
	b = appendString(b, in.Client)
	b = appendString(b, in.ClientAuthMethod)
	b = appendString(b, in.Grant)
	b = appendString(b, in.Subject)
	b = appendStrings(b, in.Scopes)
	b = appendStrings(b, in.Audiences)
	b = appendString(b, in.RemoteAddr)
	b = appendString(b, in.UserAgent)
	b = appendString(b, in.SenderConstraint)
	b = appendDPoP(b, &in.DPoP)
	b = appendMTLS(b, &in.MTLS)
	return appendKVs(b, in.Attributes)
}

// AppendDecision appends the canonical encoding of d to dst. Negative or
// out-of-range Status and RetryAfter are encoded as 0 (they would not pass
// Validate either).
func AppendDecision(dst []byte, d *Decision) []byte {
	b := append(dst, KindDecision, Version)
	b = appendBool(b, d.Allow)
	b = appendUvarint(b, uint64(clampInt(d.Status, maxStatus)))
	b = appendString(b, d.Error)
	b = appendString(b, d.Description)
	b = appendUvarint(b, uint64(clampInt(d.RetryAfter, maxRetryAfter)))
	return appendKVs(b, d.Annotations)
}

// AppendEvent appends the canonical encoding of e to dst.
func AppendEvent(dst []byte, e *Event) []byte {
	b := append(dst, KindEvent, Version)
	b = appendString(b, e.Type)
	b = appendTime(b, e.Time)
	b = appendString(b, e.CorrelationID)
	b = appendString(b, e.Tenant)
	b = appendString(b, e.Outcome)
	b = appendString(b, e.Reason)
	b = appendString(b, e.Subject)
	b = appendString(b, e.Client)
	b = appendStrings(b, e.Scopes)
	b = appendString(b, e.RemoteAddr)
	b = appendString(b, e.UserAgent)
	b = appendString(b, e.SenderConstraint)
	b = appendDPoP(b, &e.DPoP)
	b = appendMTLS(b, &e.MTLS)
	return appendKVs(b, e.Attributes)
}

const (
	maxStatus     = 0xFFFF
	maxRetryAfter = 1<<31 - 1
)

func clampInt(v, max int) int {
	if v < 0 || v > max {
		return 0
	}
	return v
}

// ---- decoding ----

// decoder reads from one immutable copy of the input, so every decoded
// string is a substring of it: one allocation per message, and nothing
// decoded aliases the caller's (possibly guest-owned, mutable) buffer.
type decoder struct {
	s   string
	off int
	err *DecodeError
}

func (d *decoder) fail(field string, at int, err error) {
	if d.err == nil {
		d.err = &DecodeError{Field: field, Offset: at, Err: err}
	}
}

// uvarint has an inlinable one-byte fast path: Go wasm pays dearly for
// every call that is not inlined, and almost every length fits one byte.
func (d *decoder) uvarint(field string) uint64 {
	if s := d.s[d.off:]; len(s) > 0 && s[0] < 0x80 {
		d.off++
		return uint64(s[0])
	}
	return d.uvarintSlow(field)
}

func (d *decoder) uvarintSlow(field string) uint64 {
	if d.err != nil {
		return 0
	}
	start := d.off
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if d.off >= len(d.s) {
			d.fail(field, start, ErrTruncated)
			return 0
		}
		c := d.s[d.off]
		d.off++
		if shift == 63 && c > 1 {
			d.fail(field, start, ErrMalformed) // overflows 64 bits
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			if c == 0 && shift > 0 {
				d.fail(field, start, ErrMalformed) // non-minimal
				return 0
			}
			return v
		}
	}
}

func (d *decoder) int(field string, max int) int {
	start := d.off
	v := d.uvarint(field)
	if v > uint64(max) {
		d.fail(field, start, ErrMalformed)
		return 0
	}
	return int(v)
}

func (d *decoder) byte1(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.s) {
		d.fail(field, d.off, ErrTruncated)
		return 0
	}
	c := d.s[d.off]
	d.off++
	return c
}

func (d *decoder) bool(field string) bool {
	if s := d.s[d.off:]; len(s) > 0 && s[0] <= 1 {
		d.off++
		return s[0] == 1
	}
	d.boolSlow(field)
	return false
}

func (d *decoder) boolSlow(field string) {
	start := d.off
	if d.byte1(field) > 1 {
		d.fail(field, start, ErrMalformed)
	}
}

// string has an inlinable fast path for strings shorter than 128 bytes.
func (d *decoder) string(field string) string {
	if s := d.s[d.off:]; len(s) > 0 && s[0] < 0x80 && int(s[0]) < len(s) {
		n := int(s[0]) + 1
		d.off += n
		return s[1:n]
	}
	return d.stringSlow(field)
}

func (d *decoder) stringSlow(field string) string {
	start := d.off
	n := d.uvarintSlow(field)
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)-d.off) {
		d.fail(field, start, ErrTruncated)
		return ""
	}
	s := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

// strs decodes consecutive strings into ps in one call, with the
// one-byte-length fast path inline in the loop: in a Go wasm guest every
// non-inlined call costs more than decoding a short string. names lists
// the fields, comma-separated, for errors.
func (d *decoder) strs(names string, ps ...*string) {
	s, off := d.s, d.off
	for i, p := range ps {
		if off < len(s) {
			if n := int(s[off]); n < 0x80 && n < len(s)-off {
				*p = s[off+1 : off+1+n]
				off += 1 + n
				continue
			}
		}
		d.off = off
		*p = d.stringSlow(nth(names, i))
		off = d.off
	}
	d.off = off
}

func (d *decoder) strs2(n1, n2 string, p1, p2 *string) {
	*p1 = d.string(n1)
	*p2 = d.string(n2)
}

// nth returns the i-th comma-separated element of names.
func nth(names string, i int) string {
	start := 0
	for j := 0; j < len(names); j++ {
		if names[j] == ',' {
			if i == 0 {
				return names[start:j]
			}
			i--
			start = j + 1
		}
	}
	return names[start:]
}

// count reads a list length; every element takes at least minSize bytes,
// so a count the remaining input cannot hold is refused before allocating.
func (d *decoder) count(field string, minSize int) int {
	start := d.off
	n := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if n > uint64((len(d.s)-d.off)/minSize) {
		d.fail(field, start, ErrTruncated)
		return 0
	}
	return int(n)
}

// strings decodes a list into dst's backing array when it is large enough
// (view decoding reuses it across calls), else into a new one.
func (d *decoder) strings(field string, dst []string) []string {
	n := d.count(field, 1)
	if n == 0 {
		return nil
	}
	out := dst[:0]
	if cap(out) < n {
		out = make([]string, 0, n)
	}
	out = out[:n]
	s, off := d.s, d.off
	for i := range out {
		if off < len(s) {
			if m := int(s[off]); m < 0x80 && m < len(s)-off {
				out[i] = s[off+1 : off+1+m]
				off += 1 + m
				continue
			}
		}
		d.off = off
		out[i] = d.stringSlow(field)
		off = d.off
	}
	d.off = off
	return out
}

func (d *decoder) kvs(field, keyField, valueField string, dst []KV) []KV {
	n := d.count(field, 2)
	if n == 0 {
		return nil
	}
	out := dst[:0]
	if cap(out) < n {
		out = make([]KV, 0, n)
	}
	out = out[:n]
	for i := range out {
		d.strs2(keyField, valueField, &out[i].Key, &out[i].Value)
	}
	return out
}

func (d *decoder) time(field string) time.Time {
	if len(d.s)-d.off < 8 {
		d.fail(field, d.off, ErrTruncated)
		d.off = len(d.s)
		return time.Time{}
	}
	return unixNano(d.le64())
}

func (d *decoder) le64() int64 {
	s := d.s[d.off : d.off+8]
	d.off += 8
	return int64(uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56)
}

func unixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (d *decoder) header(kind byte) {
	if k := d.byte1("kind"); d.err == nil && k != kind {
		d.fail("kind", 0, ErrKind)
	}
	if v := d.byte1("version"); d.err == nil && v != Version {
		d.fail("version", 1, ErrVersion)
	}
}

// Field names are constants so that decoding allocates nothing for them.
func (d *decoder) dpop(p *DPoP) {
	p.Present = d.bool("dpop.present")
	p.Valid = d.bool("dpop.valid")
	d.strs("dpop.result,dpop.jkt,dpop.alg,dpop.nonceStatus", &p.Result, &p.JKT, &p.Alg, &p.NonceStatus)
}

func (d *decoder) mtls(m *MTLS) {
	m.Present = d.bool("mtls.present")
	d.strs("mtls.thumbprint,mtls.result", &m.Thumbprint, &m.Result)
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.s) {
		d.fail("end", d.off, ErrTrailing)
	}
	if d.err != nil {
		return d.err
	}
	return nil
}

// DecodeDecisionInput decodes a canonical DecisionInput message into in,
// overwriting every field. Decoded strings share one copy of b, so b may
// be reused afterwards. On error in holds a partial value.
func DecodeDecisionInput(b []byte, in *DecisionInput) error {
	in.Scopes, in.Audiences, in.Attributes = nil, nil, nil
	return decodeDecisionInput(decoder{s: string(b)}, in)
}

// DecodeDecisionInputView is DecodeDecisionInput without allocation:
// decoded strings alias b and in's slices are reused. The result is valid
// only while b is left unchanged; callers hand it to code that does not
// retain it (the guest SDK's handler contract). Allocation is what it
// avoids: a Go wasip1 guest pays ~0.5 µs per allocation, several µs under
// the host's deadline checks (abi/RATIONALE-plugins.md).
func DecodeDecisionInputView(b []byte, in *DecisionInput) error {
	s := unsafe.String(unsafe.SliceData(b), len(b))
	if fastDecisionInput(s, in) {
		return nil
	}
	return decodeDecisionInput(decoder{s: s}, in)
}

func decodeDecisionInput(d decoder, in *DecisionInput) error {
	d.header(KindDecisionInput)
	d.strs("endpoint,tenant,correlationId", &in.Endpoint, &in.Tenant, &in.CorrelationID)
	in.Time = d.time("time")
	d.strs("client,clientAuthMethod,grant,subject", &in.Client, &in.ClientAuthMethod, &in.Grant, &in.Subject)
	in.Scopes = d.strings("scopes", in.Scopes)
	in.Audiences = d.strings("audiences", in.Audiences)
	d.strs("remoteAddr,userAgent,senderConstraint", &in.RemoteAddr, &in.UserAgent, &in.SenderConstraint)
	d.dpop(&in.DPoP)
	d.mtls(&in.MTLS)
	in.Attributes = d.kvs("attributes", "attributes.key", "attributes.value", in.Attributes)
	return d.finish()
}

// DecodeDecision decodes a canonical Decision message into out,
// overwriting every field. It checks encoding only; callers that accept
// a Decision from a plugin must also call Validate.
func DecodeDecision(b []byte, out *Decision) error {
	d := decoder{s: string(b)}
	d.header(KindDecision)
	out.Allow = d.bool("allow")
	out.Status = d.int("status", maxStatus)
	out.Error = d.string("error")
	out.Description = d.string("description")
	out.RetryAfter = d.int("retryAfter", maxRetryAfter)
	out.Annotations = d.kvs("annotations", "annotations.key", "annotations.value", nil)
	return d.finish()
}

// DecodeEvent decodes a canonical Event message into e, overwriting every
// field. Callers that accept an Event from a plugin must also call
// ValidateEvent.
func DecodeEvent(b []byte, e *Event) error {
	e.Scopes, e.Attributes = nil, nil
	return decodeEvent(decoder{s: string(b)}, e)
}

// DecodeEventView is DecodeEvent without allocation, with the aliasing
// contract of DecodeDecisionInputView.
func DecodeEventView(b []byte, e *Event) error {
	s := unsafe.String(unsafe.SliceData(b), len(b))
	if fastEvent(s, e) {
		return nil
	}
	return decodeEvent(decoder{s: s}, e)
}

func decodeEvent(d decoder, e *Event) error {
	d.header(KindEvent)
	e.Type = d.string("type")
	e.Time = d.time("time")
	d.strs("correlationId,tenant,outcome,reason,subject,client", &e.CorrelationID, &e.Tenant, &e.Outcome, &e.Reason, &e.Subject, &e.Client)
	e.Scopes = d.strings("scopes", e.Scopes)
	d.strs("remoteAddr,userAgent,senderConstraint", &e.RemoteAddr, &e.UserAgent, &e.SenderConstraint)
	d.dpop(&e.DPoP)
	d.mtls(&e.MTLS)
	e.Attributes = d.kvs("attributes", "attributes.key", "attributes.value", e.Attributes)
	return d.finish()
}

package audit

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRecord appends r's canonical encoding: byte for byte what
// encoding/json.Marshal writes for the struct (field order, omitempty,
// sorted map keys, HTML-safe string escaping; TestAppendRecordIsJSON), at
// a fraction of its cost. The writer seals every record with it, on the
// path whose cost the audit budget bounds.
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, `{"node":`...)
	b = appendJSONString(b, r.Node)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"prev":`...)
	b = appendJSONString(b, r.Prev)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, r.Source)
	b = append(b, `,"eventType":`...)
	b = appendJSONString(b, r.EventType)
	b = append(b, `,"occurredAt":"`...)
	b = r.OccurredAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "correlationId", r.CorrelationID)
	b = appendField(b, "tenant", r.Tenant)
	b = appendField(b, "outcome", r.Outcome)
	b = appendField(b, "reason", r.Reason)
	b = appendField(b, "subject", r.Subject)
	b = appendField(b, "client", r.Client)
	if len(r.Scopes) > 0 {
		b = append(b, `,"scopes":[`...)
		for i, s := range r.Scopes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, s)
		}
		b = append(b, ']')
	}
	if n := r.Network; n != nil {
		b = append(b, `,"network":{`...)
		b = appendMembers(b, "ip", n.IP, "userAgent", n.UserAgent)
		b = append(b, '}')
	}
	if c := r.SenderConstraint; c != nil {
		b = append(b, `,"senderConstraint":{"kind":`...)
		b = appendJSONString(b, c.Kind)
		b = appendField(b, "jkt", c.JKT)
		b = appendField(b, "x5t#S256", c.X5tS256)
		b = appendField(b, "alg", c.Alg)
		b = appendField(b, "nonce", c.Nonce)
		b = appendField(b, "dpop", c.DPoP)
		b = appendField(b, "mtls", c.MTLS)
		b = append(b, '}')
	}
	if len(r.Properties) > 0 {
		b = append(b, `,"properties":{`...)
		keys := make([]string, 0, len(r.Properties))
		for k := range r.Properties {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, r.Properties[k])
		}
		b = append(b, '}')
	}
	if c := r.Checkpoint; c != nil {
		b = append(b, `,"checkpoint":{"keyId":`...)
		b = appendJSONString(b, c.KeyID)
		if c.Final {
			b = append(b, `,"final":true`...)
		}
		b = append(b, `,"signature":`...)
		b = appendJSONString(b, c.Signature)
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendField appends `,"name":"v"` unless v is empty (omitempty).
func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, v)
}

// appendMembers appends the non-empty members of an object whose fields
// are all omitempty strings, without a leading comma.
func appendMembers(b []byte, kv ...string) []byte {
	first := true
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, kv[i]...)
		b = append(b, '"', ':')
		b = appendJSONString(b, kv[i+1])
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does with HTML escaping on:
// ", \ and the control characters escaped (\b \f \n \r \t short), < > &
// as \u00XX, invalid UTF-8 as \ufffd, U+2028 and U+2029 as \u2028 \u2029.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

package mtls

import (
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Subject DN matching for tls_client_auth_subject_dn (RFC 8705 §2.1.2).
//
// RFC 8705 gives the expected DN as an RFC 4514 string. Comparing strings
// would make "CN=a, O=b" differ from "cn=A,o=b", and Go's pkix.Name.String()
// re-orders and drops attributes it does not model, so both sides are turned
// into the same normalized form instead and compared as sequences of RDNs:
//
//   - the configured string is parsed per RFC 4514 §3 (short names from its
//     table plus SERIALNUMBER, POSTALCODE and EMAILADDRESS, or dotted OIDs;
//     "\\" escapes of specials and hex pairs; "#" hex-encoded BER values),
//     tolerating spaces around ",", "+" and "=" (RFC 2253 style);
//   - the certificate side is the DER of the subject as issued (RawSubject),
//     so attribute order and unknown attributes are preserved; RFC 4514
//     strings list RDNs last-to-first, so the DER order is reversed;
//   - string values (UTF8String, PrintableString, IA5String, NumericString,
//     T61String, BMPString, UniversalString) are compared after RFC 4518
//     style insignificant-space handling (trim, collapse runs) and case
//     folding, approximating caseIgnoreMatch, the matching rule of every
//     attribute in the table above; other values are compared as exact DER;
//   - the attributes inside a multi-valued RDN are a set: order is ignored.
//     Each RDN is kept as its sorted list of attributes, never joined into
//     one string: a value may contain "+" (escaped in RFC 4514), and
//     CN="a+2.5.4.6=s:b" must not equal the RDN CN=a+C=b;
//   - a dotted attribute type must be an OID a certificate can carry: first
//     arc 0, 1 or 2, second arc below 40 under 0 and 1, every arc within 31
//     bits (what encoding/asn1 decodes); anything else could never match and
//     is refused when the rule is validated.
//
// The number and order of RDNs must match exactly: a certificate with an
// extra OU does not match.

// shortNameOID maps RFC 4514 §3 short names (any case) to attribute types.
func shortNameOID(name string) (string, bool) {
	switch strings.ToUpper(name) {
	case "CN":
		return "2.5.4.3", true
	case "L":
		return "2.5.4.7", true
	case "ST":
		return "2.5.4.8", true
	case "O":
		return "2.5.4.10", true
	case "OU":
		return "2.5.4.11", true
	case "C":
		return "2.5.4.6", true
	case "STREET":
		return "2.5.4.9", true
	case "DC":
		return "0.9.2342.19200300.100.1.25", true
	case "UID":
		return "0.9.2342.19200300.100.1.1", true
	case "SERIALNUMBER":
		return "2.5.4.5", true
	case "POSTALCODE":
		return "2.5.4.17", true
	case "EMAILADDRESS":
		return "1.2.840.113549.1.9.1", true
	}
	return "", false
}

// normalizedDN is a DN in RFC 4514 (most specific first) order: each RDN is
// the sorted list of its attributes in avaKey form.
type normalizedDN [][]string

// equal reports whether two DNs have the same RDNs in the same order, each
// with the same set of attributes.
func (dn normalizedDN) equal(o normalizedDN) bool {
	return slices.EqualFunc(dn, o, slices.Equal[[]string])
}

// String renders dn as an RFC 4514 string that parseDNString turns back
// into dn: dotted OIDs, string values escaped (RFC 4514 §2.4) in their
// folded form, other values as "#" and the hex of their DER.
func (dn normalizedDN) String() string {
	var b strings.Builder
	for i, rdn := range dn {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, ava := range rdn {
			if j > 0 {
				b.WriteByte('+')
			}
			oid, v, _ := strings.Cut(ava, "=")
			b.WriteString(oid)
			b.WriteByte('=')
			switch {
			case strings.HasPrefix(v, "b:"):
				b.WriteByte('#')
				b.WriteString(v[2:])
			default:
				writeEscaped(&b, strings.TrimPrefix(v, "s:"))
			}
		}
	}
	return b.String()
}

// writeEscaped writes v with the RFC 4514 §2.4 escapes: the specials, a
// leading '#' or space, a trailing space, and NUL as a hex pair.
func writeEscaped(b *strings.Builder, v string) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == 0:
			b.WriteString(`\00`)
			continue
		case strings.IndexByte(`\"+,;<>`, c) >= 0,
			i == 0 && (c == '#' || c == ' '),
			i == len(v)-1 && c == ' ':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
}

// parseDNString parses an RFC 4514 string into normalized form.
func parseDNString(s string) (normalizedDN, error) {
	p := dnParser{s: s}
	var dn normalizedDN
	p.skipSpace()
	if p.done() {
		return nil, errors.New("empty distinguished name")
	}
	for {
		var rdn []string
		for {
			ava, err := p.ava()
			if err != nil {
				return nil, err
			}
			rdn = append(rdn, ava)
			p.skipSpace()
			if !p.consume('+') {
				break
			}
			p.skipSpace()
		}
		slices.Sort(rdn)
		dn = append(dn, rdn)
		if p.done() {
			return dn, nil
		}
		if !p.consume(',') && !p.consume(';') {
			return nil, fmt.Errorf("expected ',' at offset %d", p.i)
		}
		p.skipSpace()
	}
}

type rawAVA struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// rawRDNSET is a SET OF AttributeTypeAndValue; encoding/asn1 treats a slice
// type whose name ends in "SET" as SET OF.
type rawRDNSET []rawAVA

// parseRawSubject normalizes a certificate's DER-encoded subject.
func parseRawSubject(der []byte) (normalizedDN, error) {
	var seq []rawRDNSET
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after subject")
	}
	dn := make(normalizedDN, 0, len(seq))
	for i := len(seq) - 1; i >= 0; i-- {
		rdn := make([]string, 0, len(seq[i]))
		for _, a := range seq[i] {
			rdn = append(rdn, avaKey(a.Type.String(), a.Value))
		}
		slices.Sort(rdn)
		dn = append(dn, rdn)
	}
	return dn, nil
}

// avaKey renders one attribute in comparison form: "oid=s:text" for string
// values, "oid=b:hex" for anything else.
func avaKey(oid string, v asn1.RawValue) string {
	if s, ok := decodeDirectoryString(v); ok {
		return oid + "=s:" + foldValue(s)
	}
	return oid + "=b:" + hex.EncodeToString(v.FullBytes)
}

func decodeDirectoryString(v asn1.RawValue) (string, bool) {
	if v.Class != asn1.ClassUniversal || v.IsCompound {
		return "", false
	}
	b := v.Bytes
	switch v.Tag {
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagNumericString:
		if !utf8.Valid(b) {
			return "", false
		}
		return string(b), true
	case asn1.TagT61String: // treated as ISO 8859-1, as most software does
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r), true
	case asn1.TagBMPString:
		if len(b)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		}
		return string(utf16.Decode(u)), true
	case 28: // UniversalString, UCS-4
		if len(b)%4 != 0 {
			return "", false
		}
		r := make([]rune, len(b)/4)
		for i := range r {
			r[i] = rune(b[4*i])<<24 | rune(b[4*i+1])<<16 | rune(b[4*i+2])<<8 | rune(b[4*i+3])
		}
		return string(r), true
	}
	return "", false
}

// foldValue applies insignificant-space handling and case folding.
func foldValue(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

type dnParser struct {
	s string
	i int
}

func (p *dnParser) done() bool { return p.i >= len(p.s) }

func (p *dnParser) consume(c byte) bool {
	if !p.done() && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *dnParser) skipSpace() {
	for !p.done() && p.s[p.i] == ' ' {
		p.i++
	}
}

// ava parses attributeTypeAndValue (RFC 4514 §3).
func (p *dnParser) ava() (string, error) {
	start := p.i
	for !p.done() && p.s[p.i] != '=' && p.s[p.i] != ' ' {
		p.i++
	}
	typ := p.s[start:p.i]
	p.skipSpace()
	if !p.consume('=') {
		return "", fmt.Errorf("expected '=' after attribute type at offset %d", p.i)
	}
	oid, err := attributeOID(typ)
	if err != nil {
		return "", err
	}
	p.skipSpace()
	if !p.done() && p.s[p.i] == '#' {
		return p.hexValue(oid)
	}
	v, err := p.stringValue()
	if err != nil {
		return "", err
	}
	return oid + "=s:" + foldValue(v), nil
}

func attributeOID(typ string) (string, error) {
	if oid, ok := shortNameOID(typ); ok {
		return oid, nil
	}
	// numericoid = number 1*( DOT number ), number without leading zeros.
	parts := strings.Split(typ, ".")
	if len(parts) < 2 {
		return "", fmt.Errorf("unknown attribute type %q", typ)
	}
	for i, n := range parts {
		if n == "" || strings.Trim(n, "0123456789") != "" || (len(n) > 1 && n[0] == '0') {
			return "", fmt.Errorf("unknown attribute type %q", typ)
		}
		// X.660: first arc 0-2, second arc 0-39 under 0 and 1; every arc
		// within what encoding/asn1 decodes (31 bits).
		v, err := strconv.ParseInt(n, 10, 32)
		switch {
		case err != nil:
			return "", fmt.Errorf("attribute type %q: arc %d out of range", typ, i+1)
		case i == 0 && v > 2:
			return "", fmt.Errorf("attribute type %q: first arc must be 0, 1 or 2", typ)
		case i == 1 && parts[0] != "2" && v > 39:
			return "", fmt.Errorf("attribute type %q: second arc must be below 40 under arc %s", typ, parts[0])
		}
	}
	return typ, nil
}

// hexValue parses "#" hexstring: the BER encoding of the value.
func (p *dnParser) hexValue(oid string) (string, error) {
	p.i++ // '#'
	start := p.i
	for !p.done() && isHex(p.s[p.i]) {
		p.i++
	}
	raw, err := hex.DecodeString(p.s[start:p.i])
	if err != nil || len(raw) == 0 {
		return "", fmt.Errorf("bad hex value at offset %d", start)
	}
	var v asn1.RawValue
	if rest, err := asn1.Unmarshal(raw, &v); err != nil || len(rest) != 0 {
		return "", fmt.Errorf("hex value at offset %d is not one BER element", start)
	}
	return avaKey(oid, v), nil
}

// stringValue parses an RFC 4514 string with its escapes; unescaped
// trailing spaces are insignificant and dropped by foldValue.
func (p *dnParser) stringValue() (string, error) {
	var b []byte
scan:
	for !p.done() {
		c := p.s[p.i]
		switch c {
		case ',', '+', ';':
			break scan
		case '\\':
			p.i++
			if p.done() {
				return "", errors.New("dangling '\\' at end of DN")
			}
			c = p.s[p.i]
			if strings.IndexByte(" \"#+,;<=>\\", c) >= 0 {
				b = append(b, c)
				p.i++
				continue
			}
			if p.i+1 < len(p.s) && isHex(c) && isHex(p.s[p.i+1]) {
				x, _ := hex.DecodeString(p.s[p.i : p.i+2])
				b = append(b, x...)
				p.i += 2
				continue
			}
			return "", fmt.Errorf("bad escape at offset %d", p.i-1)
		case '"', '<', '>', 0:
			return "", fmt.Errorf("unescaped %q at offset %d", c, p.i)
		default:
			b = append(b, c)
			p.i++
		}
	}
	if !utf8.Valid(b) {
		return "", errors.New("value is not valid UTF-8")
	}
	return string(b), nil
}

func isHex(c byte) bool { return isDigit(c) || (c|0x20) >= 'a' && (c|0x20) <= 'f' }

package meter

import (
	"errors"
	"fmt"
)

// reader decodes the primitive encodings of the WebAssembly binary format
// (core spec §5.2) from a byte slice, refusing anything non-canonical that
// a later stage could misread: over-long LEB128 encodings, values out of
// range and reads past the end.
type reader struct {
	b   []byte
	off int
}

var errEOF = errors.New("unexpected end")

func (r *reader) done() bool { return r.off >= len(r.b) }

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errEOF
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) bytes(n uint32) ([]byte, error) {
	if uint64(n) > uint64(len(r.b)-r.off) {
		return nil, errEOF
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s, nil
}

// u32 reads an unsigned LEB128 of at most 5 bytes whose value fits 32 bits.
func (r *reader) u32() (uint32, error) {
	var v uint64
	for i := 0; i < 5; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if v > 0xffffffff {
				return 0, errors.New("u32 out of range")
			}
			return uint32(v), nil
		}
	}
	return 0, errors.New("u32 too long")
}

// sleb skips a signed LEB128 of at most maxBytes bytes (5 for s32, 5 for
// s33, 10 for s64) and returns its value (for block types).
func (r *reader) sleb(maxBytes int) (int64, error) {
	var v int64
	var shift uint
	for i := 0; i < maxBytes; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, nil
		}
	}
	return 0, errors.New("signed integer too long")
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(n)
	return string(b), err
}

// appendU32 appends v as unsigned LEB128.
func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// appendS64 appends v as signed LEB128.
func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

// Error is a module the rewriter refuses: malformed, using a feature the
// sandbox does not support, or above a limit. Section names where it was
// found.
type Error struct {
	Section string
	Reason  string
}

func (e *Error) Error() string {
	if e.Section == "" {
		return e.Reason
	}
	return e.Section + " section: " + e.Reason
}

func refuse(section, format string, args ...any) *Error {
	return &Error{Section: section, Reason: fmt.Sprintf(format, args...)}
}

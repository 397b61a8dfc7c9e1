// Package configdoc helps a plugin validate its configuration document
// (config_get) the way the host validates authority.yaml: every problem is
// collected and reported at once, each naming its key ("lockout.by[1]"),
// and keys the plugin does not know are problems too, so that a typo is
// refused instead of silently ignored.
//
// It parses with encoding/json's Unmarshal only: json.Decoder's
// DisallowUnknownFields would link os.File.Read and with it a WASI import
// the host refuses.
package configdoc

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Problems collects the problems of one document.
type Problems struct {
	plugin string
	list   []string
}

// New starts the problems of plugin's document (the name starts the error
// message).
func New(plugin string) *Problems { return &Problems{plugin: plugin} }

// Add records a problem of key.
func (p *Problems) Add(key, format string, args ...any) {
	p.list = append(p.list, key+": "+fmt.Sprintf(format, args...))
}

// UnknownKeys records a problem for every key of the JSON object doc (if
// it is one; anything else is left to the caller's decoding) that is not
// in known, in key order, each prefixed with prefix ("lockout.").
func (p *Problems) UnknownKeys(doc []byte, prefix string, known ...string) {
	var m map[string]json.RawMessage
	if json.Unmarshal(doc, &m) != nil {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if !slices.Contains(known, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		p.Add(prefix+k, "unknown key (known: %s)", strings.Join(known, ", "))
	}
}

// Len is the number of problems recorded.
func (p *Problems) Len() int { return len(p.list) }

// Err is nil without problems, else an *Error holding them all.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &Error{Plugin: p.plugin, Problems: slices.Clone(p.list)}
}

// Error is a refused document: every problem, each naming its key.
type Error struct {
	Plugin   string
	Problems []string
}

func (e *Error) Error() string {
	return e.Plugin + ": invalid configuration: " + strings.Join(e.Problems, "; ")
}

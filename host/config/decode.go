package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decodeNode decodes the document n into v (a pointer to a struct holding
// its defaults), walking structs, slices and pointers to structs itself so
// that every problem names its YAML path and line
// ("tokens.accessTokenLifetme (line 23): unknown key; did you mean
// accessTokenLifetime?"). Leaves, maps and types with their own
// UnmarshalYAML are decoded by yaml. Every problem of the document is
// reported, not only the first.
func decodeNode(n *yaml.Node, v any) error {
	var errs []error
	walk(n, reflect.ValueOf(v).Elem(), "", &errs)
	return errors.Join(errs...)
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func walk(n *yaml.Node, v reflect.Value, path string, errs *[]error) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	t := v.Type()
	custom := reflect.PointerTo(t).Implements(unmarshalerType)
	switch {
	case !custom && t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		walkStruct(n, v, path, errs)
	case !custom && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct && n.Kind == yaml.MappingNode &&
		!t.Implements(unmarshalerType):
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		walk(n, v.Elem(), path, errs)
	case !custom && t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && n.Kind == yaml.SequenceNode:
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			walk(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), errs)
		}
		v.Set(s)
	default:
		if err := n.Decode(v.Addr().Interface()); err != nil {
			*errs = append(*errs, fmt.Errorf("%s (line %d): %s", display(path), n.Line, decodeReason(err)))
		}
	}
}

func walkStruct(n *yaml.Node, v reflect.Value, path string, errs *[]error) {
	t := v.Type()
	fields := map[string]int{}
	var known []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = i
		known = append(known, name)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := join(path, k.Value)
		idx, ok := fields[k.Value]
		if !ok {
			msg := fmt.Sprintf("%s (line %d): unknown key", key, k.Line)
			if s := closest(k.Value, known); s != "" {
				msg += "; did you mean " + s + "?"
			}
			*errs = append(*errs, errors.New(msg))
			continue
		}
		walk(val, v.Field(idx), key, errs)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func display(path string) string {
	if path == "" {
		return "the document"
	}
	return path
}

// decodeReason is yaml's message without its own "line N:" prefix and
// "yaml: unmarshal errors:" header (the path and line are ours).
func decodeReason(err error) string {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		m = strings.TrimSpace(m)
		if strings.HasPrefix(m, "line ") {
			if _, rest, ok := strings.Cut(m, ": "); ok {
				m = rest
			}
		}
		msgs[i] = m
	}
	return strings.Join(msgs, "; ")
}

// closest is the known key nearest to s by edit distance (ignoring case),
// when it is near enough to be a typo: at most a third of s's length,
// at least 1; "" if none is.
func closest(s string, known []string) string {
	best, bestD := "", -1
	for _, k := range known {
		if d := editDistance(strings.ToLower(s), strings.ToLower(k)); bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD < 0 || bestD > max(1, len(s)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

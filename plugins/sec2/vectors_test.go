package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk/sdktest"
)

// eventVector is one golden event vector of vectors/*.json (format in
// README.md, "Event vectors").
type eventVector struct {
	Name      string         `json:"name"`
	Tenant    string         `json:"tenant,omitempty"`
	TenantKey string         `json:"tenantKey"`
	Config    map[string]any `json:"config,omitempty"`
	Grants    []string       `json:"grants,omitempty"`
	Input     abi.Event      `json:"input"`
	Want      struct {
		Records []abi.Event `json:"records"`
		Error   bool        `json:"error,omitempty"`
	} `json:"want"`
}

// readEventVectors reads every vectors/*.json in name order; a file holds
// one vector object or an array of them. Unknown fields are refused.
func readEventVectors(dir string) ([]eventVector, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no *.json vector files", dir)
	}
	slices.Sort(files)
	var out []eventVector
	names := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var vs []eventVector
		dec := json.NewDecoder(bytes.NewReader(bytes.TrimSpace(b)))
		dec.DisallowUnknownFields()
		if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
			err = dec.Decode(&vs)
		} else {
			var v eventVector
			err = dec.Decode(&v)
			vs = []eventVector{v}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for i, v := range vs {
			switch {
			case v.Name == "":
				return nil, fmt.Errorf("%s: vector %d has no name", f, i)
			case names[v.Name] != "":
				return nil, fmt.Errorf("%s: vector %q already in %s", f, v.Name, names[v.Name])
			case v.TenantKey == "":
				return nil, fmt.Errorf("%s: vector %q has no tenantKey", f, v.Name)
			case v.Want.Error && len(v.Want.Records) > 0:
				return nil, fmt.Errorf("%s: vector %q wants an error and records", f, v.Name)
			}
			names[v.Name] = f
		}
		out = append(out, vs...)
	}
	return out, nil
}

// vectorResult is what one vector produced.
type vectorResult struct {
	records []abi.Event
	err     error
}

// runEventVectors runs every vector against the compiled module under the
// host runtime, in one runtime (a module compiles once, ~0.25 s): vector
// i runs as its own tenant "vector-<i>" with its own key, configuration
// and grants, so vectors share nothing (tenant isolation is the host's,
// and TestTenantIsolation checks it). The host writes that tenant id into
// the records; it is checked and replaced by the vector's tenant, the one
// the record would carry had the vector run alone.
func runEventVectors(wasm string, vs []eventVector) ([]vectorResult, error) {
	id := func(i int) string { return fmt.Sprintf("vector-%03d", i) }
	tenants := map[string]sdktest.Options{}
	for i, v := range vs {
		o := tenantOpts(v.TenantKey, v.Config)
		if v.Grants != nil {
			o.Grants = v.Grants
		}
		tenants[id(i)] = o
	}
	p, err := sdktest.StartTenants(wasm, tenants)
	if err != nil {
		return nil, fmt.Errorf("load (tenant vector-<i> is vector i): %w", err)
	}
	defer p.Manager.Close(context.Background())
	out := make([]vectorResult, len(vs))
	index := map[string]int{}
	for i, v := range vs {
		index[id(i)] = i
		out[i].err = emit(p, id(i), v.Input)
	}
	for _, r := range p.Recorder.AuditEvents() {
		i, ok := index[r.Tenant]
		if !ok {
			return nil, fmt.Errorf("a record for unknown tenant %q", r.Tenant)
		}
		r.Tenant = vs[i].Tenant
		if r.Tenant == "" {
			r.Tenant = "test"
		}
		out[i].records = append(out[i].records, r)
	}
	return out, nil
}

// TestEventVectors runs vectors/*.json against the compiled module.
func TestEventVectors(t *testing.T) {
	vs, err := readEventVectors("vectors")
	if err != nil {
		t.Fatal(err)
	}
	results, err := runEventVectors(module(t), vs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			got := results[i]
			if v.Want.Error {
				if got.err == nil {
					t.Errorf("the event did not fail")
				}
			} else if got.err != nil {
				t.Errorf("the event failed: %v", got.err)
			}
			g, _ := json.MarshalIndent(nonNil(got.records), "", "  ")
			w, _ := json.MarshalIndent(nonNil(v.Want.Records), "", "  ")
			if !bytes.Equal(g, w) {
				t.Errorf("records\n%s\nwant\n%s", g, w)
			}
		})
	}
}

// TestEventVectorsCover: the vectors cover every host event type and the
// failure of a bad configuration.
func TestEventVectorsCover(t *testing.T) {
	vs, err := readEventVectors("vectors")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	var failing int
	for _, v := range vs {
		if len(v.Want.Records) > 0 {
			types[v.Input.Type] = true
		}
		if v.Want.Error {
			failing++
		}
	}
	for _, typ := range abi.HostEventTypes {
		if !types[typ] {
			t.Errorf("no vector records %s", typ)
		}
	}
	if failing == 0 {
		t.Error("no vector of a bad configuration")
	}
}

func TestReadEventVectorsRefusesUnknownFields(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"name": "x", "tenantKey": "k", "input": {"type": "authority.x", "subjekt": "u"}, "want": {"records": []}}`), 0o600)
	if _, err := readEventVectors(dir); err == nil {
		t.Fatal("unknown input field accepted")
	}
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`[{"name": "x", "tenantKey": "k", "input": {"type": "authority.x"}, "want": {"error": true, "records": [{"type": "authority.x"}]}}]`), 0o600)
	if _, err := readEventVectors(dir); err == nil {
		t.Fatal("a vector wanting an error and records accepted")
	}
}

func nonNil(evs []abi.Event) []abi.Event {
	if evs == nil {
		return []abi.Event{}
	}
	return evs
}

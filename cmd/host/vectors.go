package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
)

// decisionVector is one module test vector (abi/SPEC.md §8.1): a single
// decision (input and want), or a sequence of steps run in order against
// one instance set with shared state (steps).
type decisionVector struct {
	Name string `json:"name"`
	// Config is the plugin's configuration document; Grants default to
	// every grant.
	Config map[string]any `json:"config,omitempty"`
	Grants []string       `json:"grants,omitempty"`
	// Counters "unavailable" makes every counter_incr fail as a store
	// outage does (default: fresh in-memory counters).
	Counters string              `json:"counters,omitempty"`
	Input    *abi.DecisionInput  `json:"input,omitempty"`
	Want     *decisionVectorWant `json:"want,omitempty"`
	Steps    []vectorStep        `json:"steps,omitempty"`
}

// vectorStep is one step of a sequence: exactly one of a decision input,
// an event, or a clock advance.
type vectorStep struct {
	Input   *abi.DecisionInput  `json:"input,omitempty"`
	Event   *abi.Event          `json:"event,omitempty"`
	Advance string              `json:"advance,omitempty"`
	Want    *decisionVectorWant `json:"want,omitempty"`
}

type decisionVectorWant struct {
	// Decision steps: allow must match; status, error, description
	// (exactly) and retryAfter are compared when present.
	Allow       bool   `json:"allow"`
	Status      int    `json:"status,omitempty"`
	Error       string `json:"error,omitempty"`
	Description string `json:"description,omitempty"`
	RetryAfter  int    `json:"retryAfter,omitempty"`
	// Every step: the types of the audit records the plugin wrote while
	// handling the decision or the event, in order (compared when
	// present; [] is none). Event steps: whether the call fails.
	Records *[]string `json:"records,omitempty"`
	Failed  bool      `json:"failed,omitempty"`
}

// steps is the vector as a sequence (a single decision is one step).
func (v *decisionVector) steps() []vectorStep {
	if v.Steps != nil {
		return v.Steps
	}
	return []vectorStep{{Input: v.Input, Want: v.Want}}
}

// check refuses a vector whose shape is ambiguous.
func (v *decisionVector) check() error {
	switch {
	case v.Name == "":
		return errors.New("no name")
	case v.Steps != nil && (v.Input != nil || v.Want != nil):
		return errors.New("steps and a top-level input or want")
	case v.Steps == nil && (v.Input == nil || v.Want == nil):
		return errors.New("neither steps nor both input and want")
	case v.Steps != nil && len(v.Steps) == 0:
		return errors.New("empty steps")
	case v.Counters != "" && v.Counters != countersUnavailable:
		return fmt.Errorf("counters must be %q or absent, got %q", countersUnavailable, v.Counters)
	}
	for i, s := range v.steps() {
		kinds := 0
		for _, set := range []bool{s.Input != nil, s.Event != nil, s.Advance != ""} {
			if set {
				kinds++
			}
		}
		switch {
		case kinds != 1:
			return fmt.Errorf("step %d: exactly one of input, event and advance", i+1)
		case s.Advance != "":
			if d, err := time.ParseDuration(s.Advance); err != nil || d <= 0 {
				return fmt.Errorf("step %d: advance must be a positive duration like \"61s\", got %q", i+1, s.Advance)
			}
			if s.Want != nil {
				return fmt.Errorf("step %d: an advance has no want", i+1)
			}
		case s.Want == nil:
			return fmt.Errorf("step %d: no want", i+1)
		case s.Input != nil && s.Want.Failed:
			return fmt.Errorf("step %d: failed is for event steps", i+1)
		case s.Event != nil && (s.Want.Allow || s.Want.Status != 0 || s.Want.Error != "" || s.Want.Description != "" || s.Want.RetryAfter != 0):
			return fmt.Errorf("step %d: allow, status, error, description and retryAfter are for decision steps", i+1)
		}
	}
	return nil
}

func readVectors(dir string) ([]decisionVector, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no *.json vector files", dir)
	}
	sort.Strings(files)
	var out []decisionVector
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var vs []decisionVector
		if t := strings.TrimSpace(string(b)); strings.HasPrefix(t, "[") {
			err = strictJSON(b, &vs)
		} else {
			var v decisionVector
			err = strictJSON(b, &v)
			vs = []decisionVector{v}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for i := range vs {
			if err := vs[i].check(); err != nil {
				return nil, fmt.Errorf("%s: vector %d (%q): %w", f, i, vs[i].Name, err)
			}
		}
		out = append(out, vs...)
	}
	return out, nil
}

func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func pluginTest(ctx context.Context, file, dir string, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, "test:", err)
		return 1
	}
	vecs, err := readVectors(dir)
	if err != nil {
		fmt.Fprintln(stderr, "test:", err)
		return 2
	}
	// Compiled once, reused by every vector's fresh manager; the cache
	// and its key (cache.key, beside it) go with the private directory.
	tmp, err := os.MkdirTemp("", "authority-plugin-test-*")
	if err != nil {
		fmt.Fprintln(stderr, "test:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	cache := filepath.Join(tmp, "cache")
	failed := 0
	for _, v := range vecs {
		used, err := runVector(ctx, file, b, cache, v)
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v %s\n", v.Name, err, used)
			continue
		}
		fmt.Fprintf(stdout, "PASS %s %s\n", v.Name, used)
	}
	fmt.Fprintf(stdout, "%d vectors, %d passed, %d failed\n", len(vecs), len(vecs)-failed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// vectorClock is a vector's clock: it starts at the wall clock's second
// and moves only on an advance step.
type vectorClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *vectorClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *vectorClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const countersUnavailable = "unavailable"

// downCounters is a counter store that is down.
type downCounters struct{}

func (downCounters) Incr(context.Context, plugin.Scope, string, int64, time.Duration) (int64, time.Duration, error) {
	return 0, 0, errors.New("plugin test: counters unavailable (the vector's \"counters\")")
}

// vectorAudit keeps the records the plugin writes.
type vectorAudit struct {
	mu      sync.Mutex
	records []abi.Event
}

func (a *vectorAudit) Audit(_ context.Context, _ string, ev abi.Event) error {
	a.mu.Lock()
	a.records = append(a.records, ev)
	a.mu.Unlock()
	return nil
}

func (a *vectorAudit) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	types := []string{}
	for _, r := range a.records {
		types = append(types, r.Type)
	}
	a.records = nil
	return types
}

// runVector runs one vector in a fresh manager (tenant "test", plugin
// "plugin", fresh in-memory counters, unless the vector takes them down,
// and key-value store on the vector's clock), so vectors are independent while the steps of one share their
// state. Events are delivered inline, so a step's effects are complete
// before the next step. It also says how much of its work budget the
// last call used.
func runVector(ctx context.Context, file string, b []byte, cache string, v decisionVector) (string, error) {
	steps := v.steps()
	var hooks []string
	for _, s := range steps {
		h := ""
		switch {
		case s.Input != nil:
			h = s.Input.Endpoint
			if h == "" {
				h = abi.HookToken
			}
		case s.Event != nil:
			h = abi.HookEvents
		}
		if h != "" && !slices.Contains(hooks, h) {
			hooks = append(hooks, h)
		}
	}
	grants := v.Grants
	if grants == nil {
		grants = plugin.Grants()
	}
	spec := plugin.Spec{Name: "plugin", Path: file, SHA256: plugin.Digest(b), Hooks: hooks, Grants: grants, Config: v.Config}
	if slices.Contains(hooks, abi.HookEvents) {
		spec.EventDelivery = plugin.EventsInline
	}
	clock := &vectorClock{t: time.Now().UTC().Truncate(time.Second)}
	rec := &vectorAudit{}
	deps := plugin.Deps{Clock: clock, Audit: rec, Secrets: plugin.StaticSecrets{"test": []byte("authority-plugin-test")}}
	if v.Counters == countersUnavailable {
		deps.Counters = downCounters{}
	}
	m, err := plugin.NewManager(ctx, plugin.RuntimeOptions{CacheDir: cache}, map[string][]plugin.Spec{"test": {spec}}, deps)
	if err != nil {
		return "", err
	}
	defer m.Close(ctx)
	used := func() string {
		h := m.Health().Plugins[0]
		return fmt.Sprintf("(budget: used %d of %d units)", h.LastCallUnits, h.CallBudget)
	}
	at := func(i int) string {
		if v.Steps == nil {
			return ""
		}
		return fmt.Sprintf("step %d: ", i+1)
	}
	for i, s := range steps {
		switch {
		case s.Advance != "":
			d, _ := time.ParseDuration(s.Advance) // checked by readVectors
			clock.advance(d)
		case s.Input != nil:
			in := *s.Input
			if in.Endpoint == "" {
				in.Endpoint = abi.HookToken
			}
			if in.Time.IsZero() {
				in.Time = clock.Now()
			}
			got, err := m.Decide(ctx, "test", &in)
			if err != nil {
				return used(), fmt.Errorf("%splugin failed: %w", at(i), err)
			}
			types := rec.take()
			w := s.Want
			if got.Allow != w.Allow || (w.Status != 0 && got.Status != w.Status) || (w.Error != "" && got.Error != w.Error) ||
				(w.RetryAfter != 0 && got.RetryAfter != w.RetryAfter) {
				return used(), fmt.Errorf("%sgot allow=%t status=%d error=%q retryAfter=%d (%s), want allow=%t status=%d error=%q retryAfter=%d",
					at(i), got.Allow, got.Status, got.Error, got.RetryAfter, got.Description, w.Allow, w.Status, w.Error, w.RetryAfter)
			}
			if w.Description != "" && got.Description != w.Description {
				return used(), fmt.Errorf("%sgot description %q, want %q", at(i), got.Description, w.Description)
			}
			if w.Records != nil && !slices.Equal(types, *w.Records) {
				return used(), fmt.Errorf("%sthe plugin recorded %q, want %q", at(i), types, *w.Records)
			}
		case s.Event != nil:
			ev := *s.Event
			if ev.Time.IsZero() {
				ev.Time = clock.Now()
			}
			before := m.Health().Plugins[0]
			m.Emit(ctx, "test", ev)
			after := m.Health().Plugins[0]
			failed := after.Failures > before.Failures
			types := rec.take()
			switch {
			case failed != s.Want.Failed:
				return used(), fmt.Errorf("%sthe event call failed=%t (%s), want failed=%t", at(i), failed, after.LastError, s.Want.Failed)
			case s.Want.Records != nil && !slices.Equal(types, *s.Want.Records):
				return used(), fmt.Errorf("%sthe plugin recorded %q, want %q", at(i), types, *s.Want.Records)
			}
		}
	}
	return used(), nil
}

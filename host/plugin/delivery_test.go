package plugin_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
)

// pluginRecords counts the records each plugin emits with audit_emit.
type pluginRecords struct {
	mu  sync.Mutex
	got map[string][]string // plugin → outcomes of the events it echoed
}

func (r *pluginRecords) Audit(_ context.Context, name string, ev abi.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]string{}
	}
	r.got[name] = append(r.got[name], ev.Outcome)
	return nil
}

func (r *pluginRecords) of(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[name]...)
}

// TestInlineEventsAreNeverDropped: an events plugin with eventDelivery
// inline gets every event it selects before Emit returns, even with a
// queue of one that drops nearly everything for a queued plugin beside it,
// and even when the request's context is already cancelled; eventOutcomes
// keeps the other outcomes from it.
func TestInlineEventsAreNeverDropped(t *testing.T) {
	echo := func(name, delivery string, outcomes ...string) plugin.Spec {
		s := spec(t, "echo", abi.HookEvents)
		s.Name, s.Grants, s.EventDelivery, s.EventOutcomes = name, []string{plugin.GrantAudit}, delivery, outcomes
		return s
	}
	rec := &pluginRecords{}
	m, err := plugin.NewManager(context.Background(), cached(plugin.RuntimeOptions{EventQueueSize: 1, AuditRate: 1000, AuditBurst: 1000}),
		map[string][]plugin.Spec{"a": {echo("inline", plugin.EventsInline, abi.OutcomeFailure), echo("queued", "")}},
		plugin.Deps{Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	const n = 200
	for i := range n {
		ctx := context.Background()
		if i%2 == 0 {
			ctx = cancelled
		}
		m.Emit(ctx, "a", abi.Event{Type: abi.EventTokenDenied, Outcome: abi.OutcomeFailure})
		if got := len(rec.of("inline")); got != i+1 {
			t.Fatalf("after %d failure events the inline plugin has %d", i+1, got)
		}
		m.Emit(ctx, "a", abi.Event{Type: abi.EventTokenIssued, Outcome: abi.OutcomeSuccess})
	}
	if got := rec.of("inline"); strings.Join(got, ",") != strings.TrimSuffix(strings.Repeat("failure,", n), ",") {
		t.Fatalf("inline plugin got outcomes %v", got)
	}
	var dropped uint64
	for _, p := range m.Health().Plugins {
		dropped += p.EventsDropped
	}
	if dropped == 0 {
		t.Fatal("the queued plugin's queue of one dropped nothing: the test does not flood it")
	}
}

func TestEventDeliveryValidation(t *testing.T) {
	base := spec(t, "echo", abi.HookEvents)
	cases := []struct {
		mutate func(*plugin.Spec)
		want   string
	}{
		{func(s *plugin.Spec) { s.EventDelivery = "sync" }, `p.eventDelivery: must be "queued" or "inline", got "sync"`},
		{func(s *plugin.Spec) { s.Hooks, s.EventDelivery = []string{abi.HookToken}, plugin.EventsInline }, "p.eventDelivery: needs the events hook"},
		{func(s *plugin.Spec) { s.Hooks, s.EventOutcomes = []string{abi.HookToken}, []string{"failure"} }, "p.eventOutcomes: needs the events hook"},
		{func(s *plugin.Spec) { s.EventOutcomes = []string{"failure", "failed"} }, `p.eventOutcomes[1]: unknown outcome "failed"`},
	}
	for _, c := range cases {
		s := base
		c.mutate(&s)
		err := s.Validate("p")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	ok := base
	ok.EventDelivery, ok.EventOutcomes = plugin.EventsInline, []string{"failure", "locked_out"}
	if err := ok.Validate("p"); err != nil {
		t.Fatal(err)
	}
}

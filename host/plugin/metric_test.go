package plugin

import (
	"context"
	"sync"
	"testing"

	"stellaops.org/authority/abi"
)

type metricRecorder struct {
	mu  sync.Mutex
	got map[string]int64 // tenant/plugin/name → sum
}

func (r *metricRecorder) AddPluginCounter(tenant, plugin, name string, delta int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string]int64{}
	}
	r.got[tenant+"/"+plugin+"/"+name] += delta
}

// TestMetricAddBoundsNames: a plugin gets at most 16 distinct metric_add
// names (the label values of authority_plugin_metric_total stay bounded);
// further names answer HostLimited and reach no sink, known names keep
// counting.
func TestMetricAddBoundsNames(t *testing.T) {
	rec := &metricRecorder{}
	s := withGrants(hostileFile(t, "metricnames"), GrantMetrics)
	m, err := NewManager(context.Background(), RuntimeOptions{}, map[string][]Spec{"t": {s}}, Deps{Metrics: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	for call := 1; call <= 2; call++ {
		if d, err := m.Decide(context.Background(), "t", &abi.DecisionInput{Endpoint: abi.HookToken}); err != nil || !d.Allow {
			t.Fatalf("%+v %v", d, err)
		}
		if ok, limited := guestStatuses(t, m); ok != maxMetricNames || limited != 20-maxMetricNames {
			t.Fatalf("call %d: guest saw %d HostOK, %d HostLimited", call, ok, limited)
		}
	}
	if len(rec.got) != maxMetricNames || rec.got["t/hostile/m_a"] != 2 || rec.got["t/hostile/m_p"] != 2 || rec.got["t/hostile/m_q"] != 0 {
		t.Fatalf("sink: %v", rec.got)
	}
}

package plugin

import (
	"context"
	"sync"
	"testing"

	"stellaops.org/authority/abi"
)

type auditRecord struct {
	plugin string
	ev     abi.Event
}

type auditRecorder struct {
	mu  sync.Mutex
	got []auditRecord
}

func (r *auditRecorder) Audit(_ context.Context, plugin string, ev abi.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, auditRecord{plugin, ev})
	return nil
}

func (r *auditRecorder) records() []auditRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]auditRecord(nil), r.got...)
}

// guestStatuses reads what the auditflood module counted in its last call:
// audit_emit calls answered HostOK and HostLimited.
func guestStatuses(t *testing.T, m *Manager) (ok, limited uint32) {
	t.Helper()
	p := m.tenants["t"].all[0]
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 1 {
		t.Fatalf("%d idle instances", len(p.idle))
	}
	ok, _ = p.idle[0].mem.ReadUint32Le(128)
	limited, _ = p.idle[0].mem.ReadUint32Le(132)
	return ok, limited
}

// TestHostileAuditFlood: a plugin calling audit_emit 100 times per hook
// call with a forged host record gets its budget and no more: 8 records
// per call by default, fewer when the byte budget or the (tenant, plugin)
// rate runs out first; every refused record answers HostLimited and is
// counted. The records that pass reach the sink under the plugin's
// configured name with the instance's tenant, whatever the record says.
func TestHostileAuditFlood(t *testing.T) {
	const emits, size = 100, 88 // calls per hook call; encoded record size
	cases := []struct {
		name string
		opts RuntimeOptions
		want []int // records accepted per successive hook call
	}{
		{"default budget: 8 per call", RuntimeOptions{}, []int{8, 8}},
		{"byte budget", RuntimeOptions{AuditBytesPerCall: 3 * size}, []int{3, 3}},
		{"rate: burst then nothing", RuntimeOptions{AuditRate: 0.001, AuditBurst: 10}, []int{8, 2, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &auditRecorder{}
			s := withGrants(hostileFile(t, "auditflood"), GrantAudit)
			m, err := NewManager(context.Background(), c.opts, map[string][]Spec{"t": {s}}, Deps{Audit: rec})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close(context.Background()) })
			total, refused := 0, 0
			for i, want := range c.want {
				d, err := m.Decide(context.Background(), "t", &abi.DecisionInput{Endpoint: abi.HookToken})
				if err != nil || !d.Allow {
					t.Fatalf("call %d: %+v %v", i, d, err)
				}
				ok, limited := guestStatuses(t, m)
				if ok != uint32(want) || limited != uint32(emits-want) {
					t.Fatalf("call %d: guest saw %d HostOK and %d HostLimited, want %d and %d", i, ok, limited, want, emits-want)
				}
				total, refused = total+want, refused+emits-want
			}
			got := rec.records()
			if len(got) != total {
				t.Fatalf("sink got %d records, want %d", len(got), total)
			}
			for _, r := range got {
				if r.plugin != "hostile" || r.ev.Tenant != "t" || r.ev.Type != "authority.token.issued" || r.ev.Client != "victim" {
					t.Fatalf("record %+v", r)
				}
			}
			if h := m.Health().Plugins[0]; h.AuditLimited != uint64(refused) || h.Failures != 0 {
				t.Fatalf("AuditLimited = %d, want %d (%+v)", h.AuditLimited, refused, h)
			}
		})
	}
}

// TestAuditEmitRefusesBadScopes: a record whose scope is not an RFC 6749
// scope-token is refused with HostInvalid and never reaches the sink; the
// refused records still count against the per-call budget.
func TestAuditEmitRefusesBadScopes(t *testing.T) {
	rec := &auditRecorder{}
	s := withGrants(hostileFile(t, "auditflood"), GrantAudit)
	m, err := NewManager(context.Background(), RuntimeOptions{}, map[string][]Spec{"t": {s}}, Deps{Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	// The module's record with scope "admin" made "ad in" (same length).
	bad := abi.AppendEvent(nil, &abi.Event{Type: "authority.token.issued", Tenant: "other-tenant", Outcome: "success",
		Subject: "root", Client: "victim", Scopes: []string{"ad in"}})
	p := m.tenants["t"].all[0]
	if len(bad) != 88 || len(p.idle) != 1 || !p.idle[0].mem.Write(256, bad) {
		t.Fatal("cannot place the record")
	}
	if d, err := m.Decide(context.Background(), "t", &abi.DecisionInput{Endpoint: abi.HookToken}); err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	if ok, limited := guestStatuses(t, m); ok != 0 || limited != 92 {
		t.Fatalf("guest saw %d HostOK, %d HostLimited; want 0 and 92 (8 HostInvalid)", ok, limited)
	}
	if n := len(rec.records()); n != 0 {
		t.Fatalf("sink got %d records", n)
	}
}

package plugin

import "time"

// EvictIdle exposes the reaper step to tests.
func (m *Manager) EvictIdle(now time.Time) { m.evictIdle(now) }

// NewTestInstance creates (and CloseTestInstance closes) one instance of
// tenant's first plugin outside the pool, for the instantiation benchmark.
// It returns the instance's linear memory size in bytes.
func (m *Manager) NewTestInstance(tenant string) (func(), uint32, error) {
	p := m.tenants[tenant].all[0]
	inst, err := newInstance(p)
	if err != nil {
		return nil, 0, err
	}
	return inst.close, inst.mem.Size(), nil
}

// GuestPaths maps test guest names to built modules; the external test
// package's TestMain fills it.
var GuestPaths = map[string]string{}

// Usage returns the entries and bytes scope holds in c, expired or not yet
// reaped.
func (c *MemoryCounters) Usage(scope Scope) (int, int64) { return c.s.usage(scope) }

// Usage returns the entries and bytes scope holds in k, expired or not yet
// reaped.
func (k *MemoryKV) Usage(scope Scope) (int, int64) { return k.s.usage(scope) }

// NewTestInstanceMemory is NewTestInstance returning the instance's
// memory, for tests of its contents.
func (m *Manager) NewTestInstanceMemory(tenant string) (func(), func(off uint32, n uint32) ([]byte, bool), func(off uint32, b []byte) bool, error) {
	p := m.tenants[tenant].all[0]
	inst, err := newInstance(p)
	if err != nil {
		return nil, nil, nil, err
	}
	return inst.close, inst.mem.Read, inst.mem.Write, nil
}

// DataImage is the module's extracted data image of tenant's first plugin
// (nil when the segments stayed in the module).
func (m *Manager) DataImage(tenant string) []byte {
	if img := m.tenants[tenant].all[0].mod.image; img != nil {
		return img.data
	}
	return nil
}

// Runtime returns the runtime the manager owns.
func (m *Manager) Runtime() *Runtime { return m.rt }

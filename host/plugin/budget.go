package plugin

import (
	"errors"
	"sync"
	"sync/atomic"
)

// errBudgetExhausted: the node's instance budget is used up and every live
// instance is busy, so none could be closed to make room.
var errBudgetExhausted = errors.New("the node's instance budget (plugins.maxInstances) is used up by instances in use")

// budget is a node's instance budget: at most max instances live across
// every pool of a manager. A new instance takes a slot; when none is free,
// the idle instance used least recently, in any pool, is closed to free
// one (tenants that have gone quiet give way to those being served). When
// every live instance is in use, the new instance is refused: the call
// fails with KindBudget and the plugin's failure mode answers.
type budget struct {
	max   int
	pools []*pool // every pool sharing the budget, for eviction

	mu   sync.Mutex
	live int

	refusals, evictions atomic.Uint64
}

func newBudget(max int) *budget {
	if max <= 0 {
		return nil
	}
	return &budget{max: max}
}

// acquire takes a slot, evicting the least recently used idle instance
// when the budget is full; false when nothing could be evicted.
func (b *budget) acquire() bool {
	for {
		b.mu.Lock()
		if b.live < b.max {
			b.live++
			b.mu.Unlock()
			return true
		}
		b.mu.Unlock()
		if !b.evictLRU() {
			b.refusals.Add(1)
			return false
		}
	}
}

func (b *budget) release() {
	b.mu.Lock()
	b.live--
	b.mu.Unlock()
}

// Live is the number of instances holding a slot.
func (b *budget) Live() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.live
}

// evictLRU closes the idle instance, across all pools, whose last call is
// the oldest; false when no pool has an idle instance. A pool's idle list
// is LIFO, so its oldest idle instance is the first. The scan takes each
// pool's lock alone, never two at once.
func (b *budget) evictLRU() bool {
	for {
		var victim *pool
		var oldest *instance
		for _, p := range b.pools {
			p.mu.Lock()
			if len(p.idle) > 0 && (oldest == nil || p.idle[0].lastUsed.Before(oldest.lastUsed)) {
				victim, oldest = p, p.idle[0]
			}
			p.mu.Unlock()
		}
		if victim == nil {
			return false
		}
		victim.mu.Lock()
		if len(victim.idle) == 0 || victim.idle[0] != oldest {
			victim.mu.Unlock()
			continue // taken or evicted meanwhile: look again
		}
		copy(victim.idle, victim.idle[1:])
		victim.idle[len(victim.idle)-1] = nil
		victim.idle = victim.idle[:len(victim.idle)-1]
		victim.live--
		victim.signalLocked()
		victim.mu.Unlock()
		oldest.close() // releases the slot
		victim.stats.evictions.Add(1)
		b.evictions.Add(1)
		return true
	}
}

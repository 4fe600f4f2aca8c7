package pool

// The limit: fewer of the pool's slots handed out than its size, for a while, without resizing
// it. The jobs runtime limits its pool so that jobs yield cores to HTTP requests (jobs.Runtime.
// SetYield); the size stays the operator's or the autoscaler's number, and a pinned pool keeps
// its pinned threads, idle, for when the limit lifts.

// SetLimit lets at most n tasks hold a slot at once while n is below the size; 0 (or n at or
// above the size) lifts the limit. Like a shrink it lets running tasks finish: the limit applies
// as slots come free, where a worker would take its next task, so tasks waiting in the backlog
// wait longer; raising it admits waiters at once. It returns the old limit.
func (p *Pool) SetLimit(n int) int {
	n = max(n, 0)
	var starts []*waiter
	p.mu.Lock()
	old := p.limit
	p.limit = n
	for p.running < p.activeLocked() && p.waiters.Len() > 0 {
		p.running++
		if w := p.handOffLocked(); w != nil {
			starts = append(starts, w)
		}
	}
	p.mu.Unlock()
	for _, w := range starts {
		p.startHandedOff(w)
	}
	return old
}

// Limit returns the limit SetLimit set, 0 for none.
func (p *Pool) Limit() int { p.mu.Lock(); defer p.mu.Unlock(); return p.limit }

// activeLocked is how many slots may be held at once: the size, or the limit while below it. mu held.
func (p *Pool) activeLocked() int {
	if p.limit > 0 && p.limit < p.size {
		return p.limit
	}
	return p.size
}

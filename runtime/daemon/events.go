package daemon

import (
	"sync"

	"github.com/corral-dev/corral/runtime/api"
)

// broadcaster fans state changes out to `corral events` streams. A slow
// subscriber loses events rather than slowing supervision down.
type broadcaster struct {
	mu   sync.Mutex
	subs map[chan api.Event]struct{}
}

func newBroadcaster() *broadcaster {
	return &broadcaster{subs: map[chan api.Event]struct{}{}}
}

func (b *broadcaster) subscribe() (<-chan api.Event, func()) {
	ch := make(chan api.Event, 256)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
		b.mu.Unlock()
	}
}

// Publish sends e to every subscriber (service.Events).
func (b *broadcaster) Publish(e api.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- e:
		default: // full: this subscriber is too slow; drop for it alone
		}
	}
}

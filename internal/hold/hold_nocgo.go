//go:build !cgo

package hold

import "errors"

// Child needs cgo: the child runs C, never Go.
type Child struct{}

// Start needs cgo.
func Start(flags int) (*Child, error) {
	return nil, errors.New("placeholder child: this corral was built without cgo")
}

func (c *Child) Pid() int                { return 0 }
func (c *Child) Release()                {}
func (c *Child) Reaped() <-chan struct{} { ch := make(chan struct{}); close(ch); return ch }

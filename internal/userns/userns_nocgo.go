//go:build !cgo

package userns

import (
	"errors"
	"os"
)

// Open needs cgo: the child that makes the namespace runs C, never Go.
func Open(ms []Mapping) (*os.File, error) {
	return nil, errors.New("user namespace: this corral was built without cgo")
}

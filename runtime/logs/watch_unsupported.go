//go:build !linux

package logs

import (
	"context"
	"errors"
)

// watch is not to be had here: Follow polls.
func watch(context.Context, string) (waker, error) {
	return nil, errors.ErrUnsupported
}

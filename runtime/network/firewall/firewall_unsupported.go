//go:build !linux

package firewall

import (
	"errors"
	"fmt"
)

// Apply is not to be had here: nftables is Linux's.
func Apply(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return fmt.Errorf("apply firewall %s: %w", c.Table, errors.ErrUnsupported)
}

// Remove is not to be had here: nftables is Linux's.
func Remove(table string, netns int) error {
	return fmt.Errorf("remove firewall %s: %w", table, errors.ErrUnsupported)
}

// Denied is not to be had here: nftables is Linux's.
func Denied(table string, netns int) (map[string]uint64, error) {
	return nil, fmt.Errorf("read denied counts of %s: %w", table, errors.ErrUnsupported)
}

// Add is not to be had here: nftables is Linux's.
func Add(c Config, name string) error { return Apply(c) }

// Delete is not to be had here: nftables is Linux's.
func Delete(c Config, name string) error { return Apply(c) }

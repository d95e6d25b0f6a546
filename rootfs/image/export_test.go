package image

// SetTestHook sets the hook called at points of an import (see testHook)
// and returns a function that unsets it.
func SetTestHook(f func(point string)) func() {
	testHook = f
	return func() { testHook = nil }
}

package signaling_test

import (
	"testing"

	"go.uber.org/goleak"
)

// checkLeaks verifies, after every other cleanup of the test ran, that the
// test left no goroutines behind. Call it first in a test.
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

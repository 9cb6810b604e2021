package signaling_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// checkLeaks verifies, after every other cleanup of the test ran, that the
// test left no goroutines behind. Call it first in a test. Goroutines get
// a few seconds to end: a session closing towards a client that stopped
// reading takes up to its drain timeout (1 s) to give up.
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
			if goleak.Find(ignore) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		goleak.VerifyNone(t, ignore)
	})
}

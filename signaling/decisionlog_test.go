package signaling_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// decisionMessages are the debug log messages of the congestion controller
// and the layer switches: what a failed congestion test needs to show.
var decisionMessages = []string{
	`msg="layer allocation"`, `msg="layer switch"`, `msg="keyframe request sent"`,
	`msg="bandwidth estimate"`, `msg="probe `,
}

// decisionLogMax bounds the lines a node keeps (the newest win).
const decisionLogMax = 600

// decisionLog keeps a node's congestion decisions, to print if the test
// fails: a flaky congestion test on CI then says what the node decided.
type decisionLog struct {
	mu    sync.Mutex
	lines []string
}

// Write takes the text handler's lines and keeps the decisions.
func (d *decisionLog) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte{'\n'}) {
		s := string(line)
		for _, m := range decisionMessages {
			if strings.Contains(s, m) {
				d.mu.Lock()
				if len(d.lines) == decisionLogMax {
					d.lines = append(d.lines[:0], d.lines[decisionLogMax/2:]...)
				}
				d.lines = append(d.lines, s)
				d.mu.Unlock()
				break
			}
		}
	}
	return len(p), nil
}

// decisionLogger is a node's logger when FANOUT_TEST_LOG is not set: it
// keeps the congestion decisions and logs them if t failed.
func decisionLogger(t *testing.T) *slog.Logger {
	d := &decisionLog{}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		t.Logf("the node's congestion decisions (last %d lines):\n%s", len(d.lines), strings.Join(d.lines, "\n"))
	})
	return slog.New(slog.NewTextHandler(d, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

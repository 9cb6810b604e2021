//go:build !race

package signaling_test

// raceEnabled: the tests run under the race detector.
const raceEnabled = false

//go:build race

package sfu

// raceEnabled: the race detector is on (sync.Pool drops items under it, so
// allocation counts are not meaningful).
const raceEnabled = true

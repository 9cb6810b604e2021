package sfu

import (
	"crypto/rand"
)

// ID prefixes, as LiveKit clients expect them.
const (
	RoomPrefix        = "RM_"
	ParticipantPrefix = "PA_"
	TrackPrefix       = "TR_"
)

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewID returns prefix followed by 12 random base62 characters.
func NewID(prefix string) string {
	var raw [12]byte
	_, _ = rand.Read(raw[:])
	out := make([]byte, len(prefix)+len(raw))
	copy(out, prefix)
	for i, b := range raw {
		out[len(prefix)+i] = idAlphabet[int(b)%len(idAlphabet)]
	}
	return string(out)
}

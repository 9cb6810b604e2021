package simulcast

import (
	"bytes"
	"testing"
)

func TestREDPrimary(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    []byte
		ok      bool
	}{
		{"primary only", []byte{111, 1, 2, 3}, []byte{1, 2, 3}, true},
		{"one redundant block", []byte{0x80 | 111, 0x03, 0xc0, 2, 111, 9, 9, 1, 2, 3}, []byte{1, 2, 3}, true},
		{"two redundant blocks", []byte{0x80 | 111, 0, 0x20, 1, 0x80 | 111, 0, 0x10, 2, 111, 7, 8, 8, 4}, []byte{4}, true},
		{"block length beyond payload", []byte{0x80 | 111, 0, 0, 50, 111, 1}, nil, false},
		{"truncated header", []byte{0x80 | 111, 0}, nil, false},
		{"empty", nil, nil, false},
		{"empty primary", []byte{111}, []byte{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := REDPrimary(tc.payload)
			if ok != tc.ok || !bytes.Equal(got, tc.want) {
				t.Fatalf("REDPrimary(%v) = %v, %v; want %v, %v", tc.payload, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzREDPrimary(f *testing.F) {
	f.Add([]byte{0x80 | 111, 0x03, 0xc0, 2, 111, 9, 9, 1, 2, 3})
	f.Fuzz(func(t *testing.T, payload []byte) {
		if p, ok := REDPrimary(payload); ok && len(p) > len(payload) {
			t.Fatal("primary longer than payload")
		}
	})
}

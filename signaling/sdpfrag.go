package signaling

import (
	"fmt"
	"strings"
)

// sdpFrag is what a trickle-ice-sdpfrag body (RFC 8840) carries.
type sdpFrag struct {
	ufrag, pwd string
	candidates []fragCandidate
}

// fragCandidate is one a=candidate line and the mid of its section.
type fragCandidate struct {
	candidate, mid string
}

// maxFragCandidates bounds the candidates of one PATCH.
const maxFragCandidates = 64

// parseSDPFrag reads the ICE lines of an sdpfrag: session-level
// credentials, then m= sections with a=mid and a=candidate lines. Other
// lines (ice-options, end-of-candidates) are accepted and ignored.
func parseSDPFrag(body string) (sdpFrag, error) {
	var f sdpFrag
	mid := ""
	for n, raw := range strings.Split(body, "\n") {
		line := strings.TrimRight(raw, "\r")
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || len(key) != 1 {
			return f, fmt.Errorf("sdpfrag line %d: %q is not an SDP line (x=value)", n+1, line)
		}
		if key == "m" {
			mid = ""
			continue
		}
		if key != "a" {
			continue
		}
		name, arg, _ := strings.Cut(value, ":")
		switch name {
		case "ice-ufrag":
			f.ufrag = arg
		case "ice-pwd":
			f.pwd = arg
		case "mid":
			mid = arg
		case "candidate":
			if len(f.candidates) == maxFragCandidates {
				return f, fmt.Errorf("sdpfrag: more than %d candidates", maxFragCandidates)
			}
			f.candidates = append(f.candidates, fragCandidate{candidate: value, mid: mid})
		}
	}
	return f, nil
}

package signaling

import (
	"reflect"
	"strings"
	"testing"

	"github.com/livekit/protocol/livekit"
)

func TestParseSDPFrag(t *testing.T) {
	for _, c := range []struct {
		name, body string
		want       sdpFrag
		err        string
	}{
		{"candidates by mid", "a=ice-ufrag:u\r\na=ice-pwd:p\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n",
			sdpFrag{ufrag: "u", pwd: "p", candidates: []fragCandidate{{"candidate:1 1 udp 1 10.0.0.1 5000 typ host", "0"}}}, ""},
		{"bare lines", "a=mid:v\na=candidate:2 1 udp 1 10.0.0.2 5000 typ host\n",
			sdpFrag{candidates: []fragCandidate{{"candidate:2 1 udp 1 10.0.0.2 5000 typ host", "v"}}}, ""},
		{"empty", "", sdpFrag{}, ""},
		{"not SDP", "hello\r\n", sdpFrag{}, "not an SDP line"},
		{"too many", strings.Repeat("a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n", maxFragCandidates+1), sdpFrag{}, "more than"},
	} {
		got, err := parseSDPFrag(c.body)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v %v, want %+v", c.name, got, err, c.want)
		}
	}
}

func TestICEServerLinks(t *testing.T) {
	got := iceServerLinks([]*livekit.ICEServer{
		{Urls: []string{"stun:stun.example.net:3478"}},
		{Urls: []string{"turn:turn.example.net?transport=udp"}, Username: "u", Credential: "p"},
	})
	want := []string{
		`<stun:stun.example.net:3478>; rel="ice-server"`,
		`<turn:turn.example.net?transport=udp>; rel="ice-server"; username="u"; credential="p"; credential-type="password"`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("links %q, want %q", got, want)
	}
}

// FuzzParseSDPFrag: any PATCH body parses or is refused, never panics, and
// what parses stays within the candidate bound.
func FuzzParseSDPFrag(f *testing.F) {
	f.Add("a=ice-ufrag:u\r\na=ice-pwd:p\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n")
	f.Add("a=end-of-candidates\n")
	f.Add("=\n==\na\n")
	f.Fuzz(func(t *testing.T, body string) {
		frag, err := parseSDPFrag(body)
		if err == nil && len(frag.candidates) > maxFragCandidates {
			t.Fatalf("%d candidates", len(frag.candidates))
		}
	})
}

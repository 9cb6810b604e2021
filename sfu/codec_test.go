package sfu

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestSubscriberCodecH264Profiles: a published H.264 stream finds the
// subscriber codec of its profile whatever the spelling of its
// profile-level-id, and no codec of another profile.
func TestSubscriberCodecH264Profiles(t *testing.T) {
	for _, c := range []struct {
		fmtp string
		want string // profile-level-id of the subscriber codec, "" for none
	}{
		{"packetization-mode=1;profile-level-id=42c01e", "42e01f"}, // GStreamer x264, constrained baseline
		{"packetization-mode=1;profile-level-id=42e01f", "42e01f"},
		{"packetization-mode=1;profile-level-id=4d801f", "42e01f"}, // main with constraint_set0: constrained baseline
		{"packetization-mode=1;profile-level-id=42001f", "42001f"}, // baseline
		{"packetization-mode=1;profile-level-id=4d0032", "4d001f"}, // main, another level
		{"packetization-mode=1;profile-level-id=640c34", "640c1f"}, // constrained high
		{"packetization-mode=1;profile-level-id=640028", "64001f"}, // high, another level
		{"packetization-mode=1;profile-level-id=6e001f", ""},       // high 10: not offered to subscribers
		{"packetization-mode=0;profile-level-id=42e01f", ""},       // single NAL mode
		{"packetization-mode=1;profile-level-id=zz", ""},
	} {
		got, ok := SubscriberCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, SDPFmtpLine: c.fmtp}})
		plid := parseFmtp(got.SDPFmtpLine)["profile-level-id"]
		if (c.want == "") != !ok || plid != c.want {
			t.Errorf("%s: got %q (ok %v), want %q", c.fmtp, plid, ok, c.want)
		}
	}
}

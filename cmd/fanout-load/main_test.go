package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestUsage checks the command line: no subcommand, an unknown one and a
// publish without a room are usage errors (exit 2) with a precise message.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: fanout-load"},
		{[]string{"help"}, 0, "publish"},
		{[]string{"flood"}, 2, `unknown subcommand "flood"`},
		{[]string{"publish"}, 2, "--room and --identity are required"},
		{[]string{"publish", "--room", "r", "extra"}, 2, "unexpected arguments"},
		{[]string{"publish", "--room", "r", "--duration", "-1s"}, 2, "is negative"},
		{[]string{"publish", "--room", "r", "--files", "/nonexistent"}, 1, "video layer q"},
	} {
		var out, errOut bytes.Buffer
		if code := run(tc.args, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

// TestMedia checks the test media as publish loads it: three layers of 40
// VP8 frames starting with a keyframe, and the Opus packets of the Ogg file
// without its two header packets.
func TestMedia(t *testing.T) {
	layers, err := loadVP8("../../signaling/testdata/simulcast")
	if err != nil {
		t.Fatal(err)
	}
	for i, frames := range layers {
		if len(frames) != 40 || !frames[0].key || !frames[20].key || frames[1].key {
			t.Errorf("layer %s: %d frames, keyframes at 0/20: %v/%v", simLayers[i].rid, len(frames), frames[0].key, frames[20].key)
		}
	}
	pkts, err := loadOpus("../../interop/testdata/audio_opus.ogg")
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) < 400 || len(pkts) > 600 {
		t.Errorf("%d Opus packets in 10 s of audio, want about 500", len(pkts))
	}
	if _, err := oggPackets([]byte("OggS\x00 too short")); !errors.Is(err, errBadOgg) {
		t.Errorf("a truncated page: %v, want errBadOgg", err)
	}
	if _, err := ivfFrames([]byte("DKIF")); err == nil {
		t.Error("a truncated IVF header was accepted")
	}
}

package sfu

import (
	"errors"
	"strings"
	"testing"

	"github.com/livekit/protocol/livekit"
)

// TestLimitChecks: each per-request check refuses just past its limit
// with its sentinel error and the limit's key, and passes at the limit;
// zero limits take the defaults.
func TestLimitChecks(t *testing.T) {
	l := Limits{MaxNameLength: 4, MaxMetadataSize: 4, MaxAttributesSize: 4, MaxTrackNameLength: 4, MaxSimulcastLayers: 2, MaxTracksPerParticipant: 2, MaxRooms: 1}
	str := func(n int) *string { s := strings.Repeat("x", n); return &s }
	layers := func(n int) []*livekit.VideoLayer { return make([]*livekit.VideoLayer, n) }
	cases := []struct {
		name string
		err  error
		want error
		key  string
	}{
		{"name at limit", l.CheckMetadata(str(4), nil, nil), nil, ""},
		{"name past", l.CheckMetadata(str(5), nil, nil), ErrNameTooLong, "limits.max_name_length 4"},
		{"metadata past", l.CheckMetadata(nil, str(5), nil), ErrMetadataTooLarge, "limits.max_metadata_size 4"},
		{"attributes at limit", l.CheckMetadata(nil, nil, map[string]string{"ab": "cd"}), nil, ""},
		{"attributes past", l.CheckMetadata(nil, nil, map[string]string{"ab": "cde"}), ErrAttributesTooLarge, "limits.max_attributes_size 4"},
		{"track name past", l.checkAddTrack(&livekit.AddTrackRequest{Name: "abcde"}), ErrTrackNameTooLong, "limits.max_track_name_length 4"},
		{"stream past", l.checkAddTrack(&livekit.AddTrackRequest{Stream: "abcde"}), ErrTrackNameTooLong, "(stream)"},
		{"layers at limit", l.checkAddTrack(&livekit.AddTrackRequest{Layers: []*livekit.VideoLayer{{}, {}}}), nil, ""},
		{"layers past", l.checkAddTrack(&livekit.AddTrackRequest{Layers: layers(3)}), ErrTooManyLayers, "limits.max_simulcast_layers 2"},
		{"rid past", l.checkAddTrack(&livekit.AddTrackRequest{Layers: []*livekit.VideoLayer{{Rid: "abcde"}}}), ErrTrackNameTooLong, "(rid)"},
		{"audio features past", l.checkAddTrack(&livekit.AddTrackRequest{AudioFeatures: make([]livekit.AudioTrackFeature, 100)}), ErrBadAddTrack, "audio features"},
		{"tracks at limit", l.checkTrackCount(1), nil, ""},
		{"tracks past", l.checkTrackCount(2), ErrTooManyTracks, "3 > limits.max_tracks_per_participant 2"},
		{"rooms past", l.checkRooms(1), ErrTooManyRooms, "2 > limits.max_rooms 1"},
		{"defaults", Limits{}.CheckMetadata(str(256), str(64<<10), nil), nil, ""},
		{"defaults past", Limits{}.CheckMetadata(str(257), nil, nil), ErrNameTooLong, "limits.max_name_length 256"},
	}
	for _, tc := range cases {
		if tc.want == nil && tc.err != nil || tc.want != nil && (!errors.Is(tc.err, tc.want) || !strings.Contains(tc.err.Error(), tc.key)) {
			t.Errorf("%s: got %v, want %v with %q", tc.name, tc.err, tc.want, tc.key)
		}
	}
	if got := mergedAttributes(map[string]string{"a": "1", "b": "2"}, map[string]string{"a": "", "c": "3"}); len(got) != 2 || got["b"] != "2" || got["c"] != "3" {
		t.Errorf("merged attributes %v", got)
	}
}

package sfu

import (
	"fmt"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"golang.org/x/time/rate"
)

// Limits bounds what one client can make the node hold or do: each is
// checked where the client's request arrives, and answered with an error
// that names the limit (its YAML key under limits:) and its value.
// A zero field takes its default (DefaultLimits).
type Limits struct {
	// MaxRooms bounds the rooms of this node (limits.max_rooms).
	MaxRooms int
	// MaxTracksPerParticipant bounds the tracks a participant publishes
	// or has pending (limits.max_tracks_per_participant).
	MaxTracksPerParticipant int
	// MaxSimulcastLayers bounds the layers of one track (limits.max_simulcast_layers).
	MaxSimulcastLayers int
	// MaxTrackNameLength bounds a track's name, in bytes (limits.max_track_name_length).
	MaxTrackNameLength int
	// MaxNameLength bounds a participant's name, in bytes (limits.max_name_length).
	MaxNameLength int
	// MaxMetadataSize bounds participant and room metadata, in bytes
	// (limits.max_metadata_size).
	MaxMetadataSize int
	// MaxAttributesSize bounds the sum of a participant's attribute keys
	// and values, in bytes (limits.max_attributes_size).
	MaxAttributesSize int
	// MaxDataPacketSize bounds one data packet, in bytes (limits.max_data_packet_size).
	MaxDataPacketSize int
	// DataPacketRate and DataPacketBurst are the token bucket of the data
	// packets one participant sends (limits.data_packet_rate, limits.data_packet_burst).
	DataPacketRate  float64
	DataPacketBurst int
	// DataByteRate is the token bucket (one second of burst) of the data
	// bytes one participant sends (limits.data_byte_rate).
	DataByteRate int
}

// DefaultLimits are limits a production node can live with: far above
// what LiveKit's clients send, far below what would let one client make
// the node do N× work for every byte it sends.
func DefaultLimits() Limits {
	return Limits{
		MaxRooms:                1000,
		MaxTracksPerParticipant: 32,
		MaxSimulcastLayers:      3,
		MaxTrackNameLength:      256,
		MaxNameLength:           256,
		MaxMetadataSize:         64 << 10,
		MaxAttributesSize:       64 << 10,
		MaxDataPacketSize:       MaxDataPacketSize,
		DataPacketRate:          100,
		DataPacketBurst:         200,
		DataByteRate:            1 << 20,
	}
}

// withDefaults fills in every zero field from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	orDefault := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	orDefault(&l.MaxRooms, d.MaxRooms)
	orDefault(&l.MaxTracksPerParticipant, d.MaxTracksPerParticipant)
	orDefault(&l.MaxSimulcastLayers, d.MaxSimulcastLayers)
	orDefault(&l.MaxTrackNameLength, d.MaxTrackNameLength)
	orDefault(&l.MaxNameLength, d.MaxNameLength)
	orDefault(&l.MaxMetadataSize, d.MaxMetadataSize)
	orDefault(&l.MaxAttributesSize, d.MaxAttributesSize)
	orDefault(&l.MaxDataPacketSize, d.MaxDataPacketSize)
	orDefault(&l.DataPacketBurst, d.DataPacketBurst)
	orDefault(&l.DataByteRate, d.DataByteRate)
	if l.DataPacketRate <= 0 {
		l.DataPacketRate = d.DataPacketRate
	}
	return l
}

// limitError names the limit a request went past.
func limitError(sentinel error, got int, key string, limit int) error {
	return fmt.Errorf("%w: %d > %s %d", sentinel, got, key, limit)
}

// CheckMetadata checks a participant's (or room's) name, metadata and
// attributes; nil or empty fields are not checked.
func (l Limits) CheckMetadata(name, metadata *string, attrs map[string]string) error {
	l = l.withDefaults()
	if name != nil && len(*name) > l.MaxNameLength {
		return limitError(ErrNameTooLong, len(*name), "limits.max_name_length", l.MaxNameLength)
	}
	if metadata != nil && len(*metadata) > l.MaxMetadataSize {
		return limitError(ErrMetadataTooLarge, len(*metadata), "limits.max_metadata_size", l.MaxMetadataSize)
	}
	if n := attributesSize(attrs); n > l.MaxAttributesSize {
		return limitError(ErrAttributesTooLarge, n, "limits.max_attributes_size", l.MaxAttributesSize)
	}
	return nil
}

func attributesSize(attrs map[string]string) int {
	n := 0
	for k, v := range attrs {
		n += len(k) + len(v)
	}
	return n
}

// checkAddTrack checks the parts of an addTrack request that the
// server re-sends to every other participant: its name and its layers.
func (l Limits) checkAddTrack(req *livekit.AddTrackRequest) error {
	l = l.withDefaults()
	if len(req.Name) > l.MaxTrackNameLength {
		return limitError(ErrTrackNameTooLong, len(req.Name), "limits.max_track_name_length", l.MaxTrackNameLength)
	}
	if len(req.Layers) > l.MaxSimulcastLayers {
		return limitError(ErrTooManyLayers, len(req.Layers), "limits.max_simulcast_layers", l.MaxSimulcastLayers)
	}
	if len(req.Stream) > l.MaxTrackNameLength {
		return limitError(ErrTrackNameTooLong, len(req.Stream), "limits.max_track_name_length (stream)", l.MaxTrackNameLength)
	}
	for _, layer := range req.Layers {
		if len(layer.Rid) > l.MaxTrackNameLength {
			return limitError(ErrTrackNameTooLong, len(layer.Rid), "limits.max_track_name_length (rid)", l.MaxTrackNameLength)
		}
	}
	if n := len(req.AudioFeatures); n > len(livekit.AudioTrackFeature_name) {
		return fmt.Errorf("%w: %d audio features, there are %d", ErrBadAddTrack, n, len(livekit.AudioTrackFeature_name))
	}
	return nil
}

// checkTrackCount checks a new track against the tracks a participant
// has published or pending; the caller holds the publisher's lock.
func (l Limits) checkTrackCount(have int) error {
	l = l.withDefaults()
	if have >= l.MaxTracksPerParticipant {
		return limitError(ErrTooManyTracks, have+1, "limits.max_tracks_per_participant", l.MaxTracksPerParticipant)
	}
	return nil
}

// checkRooms checks a new room against the rooms the node has.
func (l Limits) checkRooms(have int) error {
	l = l.withDefaults()
	if have >= l.MaxRooms {
		return limitError(ErrTooManyRooms, have+1, "limits.max_rooms", l.MaxRooms)
	}
	return nil
}

// Limits returns the room's limits (defaults filled in).
func (r *Room) Limits() Limits { return r.params.Limits.withDefaults() }

// UpdateMetadata changes the room's metadata, within limits.max_metadata_size.
func (r *Room) UpdateMetadata(md string) (*livekit.Room, error) {
	if err := r.params.Limits.CheckMetadata(nil, &md, nil); err != nil {
		return nil, err
	}
	return r.SetMetadata(md), nil
}

// dataLimiter is one participant's token buckets for the data packets it
// sends, and when it was last told it went past them.
type dataLimiter struct {
	limits   Limits // with defaults filled in, once
	mu       sync.Mutex
	packets  *rate.Limiter
	bytes    *rate.Limiter
	lastWarn time.Time
}

// dataWarnInterval bounds how often a participant is told its data
// packets are dropped: the warning must not become an amplifier itself.
const dataWarnInterval = time.Second

func newDataLimiter(l Limits) *dataLimiter {
	l = l.withDefaults()
	return &dataLimiter{
		limits:  l,
		packets: rate.NewLimiter(rate.Limit(l.DataPacketRate), l.DataPacketBurst),
		bytes:   rate.NewLimiter(rate.Limit(l.DataByteRate), max(l.DataByteRate, l.MaxDataPacketSize)),
	}
}

// checkData decides whether a data packet of n bytes from p is relayed;
// a packet past a limit is dropped and p is told why (at most once per
// dataWarnInterval) with a LIMIT_EXCEEDED RequestResponse.
func (r *Room) checkData(p *Participant, n int) bool {
	dl := p.dataLimits
	l := dl.limits
	now := time.Now()
	tooLarge := n > l.MaxDataPacketSize
	tooFast := !tooLarge && !dl.packets.AllowN(now, 1)
	tooManyBytes := !tooLarge && !tooFast && !dl.bytes.AllowN(now, n)
	if !tooLarge && !tooFast && !tooManyBytes {
		return true
	}
	dl.mu.Lock()
	warn := now.Sub(dl.lastWarn) >= dataWarnInterval
	if warn {
		dl.lastWarn = now
	}
	dl.mu.Unlock()
	if !warn {
		return false // a flood costs a check per packet, not an error and a log line
	}
	var err error
	switch {
	case tooLarge:
		err = limitError(ErrDataTooLarge, n, "limits.max_data_packet_size", l.MaxDataPacketSize)
	case tooFast:
		err = fmt.Errorf("%w: more than limits.data_packet_rate %g packets/s (burst %d)", ErrDataRateLimited, l.DataPacketRate, l.DataPacketBurst)
	default:
		err = fmt.Errorf("%w: more than limits.data_byte_rate %d bytes/s", ErrDataRateLimited, l.DataByteRate)
	}
	p.log.Debug("data packets dropped", "err", err)
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_RequestResponse{RequestResponse: &livekit.RequestResponse{
		Reason: livekit.RequestResponse_LIMIT_EXCEEDED, Message: "data packet dropped: " + err.Error(),
	}}})
	return false
}

// mergedAttributes is what a participant's attributes become after an
// update (an empty value deletes its key), to check their size before
// they change.
func mergedAttributes(have, update map[string]string) map[string]string {
	if len(update) == 0 {
		return nil
	}
	out := make(map[string]string, len(have)+len(update))
	for k, v := range have {
		out[k] = v
	}
	for k, v := range update {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

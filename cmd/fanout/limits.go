package main

import (
	"errors"
	"fmt"

	"github.com/fanout-sfu/fanout/sfu"
	"github.com/fanout-sfu/fanout/signaling"
)

// LimitsConfig is the limits: section: what one client may make the node
// hold or do. Every key is documented, with its default and the error a
// client gets past it, in fanout.example.yaml and the README.
type LimitsConfig struct {
	MaxRooms                int     `yaml:"max_rooms"`
	MaxTracksPerParticipant int     `yaml:"max_tracks_per_participant"`
	MaxSimulcastLayers      int     `yaml:"max_simulcast_layers"`
	MaxTrackNameLength      int     `yaml:"max_track_name_length"`
	MaxNameLength           int     `yaml:"max_name_length"`
	MaxMetadataSize         int     `yaml:"max_metadata_size"`
	MaxAttributesSize       int     `yaml:"max_attributes_size"`
	MaxDataPacketSize       int     `yaml:"max_data_packet_size"`
	DataPacketRate          float64 `yaml:"data_packet_rate"`
	DataPacketBurst         int     `yaml:"data_packet_burst"`
	DataByteRate            int     `yaml:"data_byte_rate"`
	MaxSignalMessageSize    int     `yaml:"max_signal_message_size"`
	SignalRate              float64 `yaml:"signal_rate"`
	SignalBurst             int     `yaml:"signal_burst"`
	MaxAPIBodySize          int     `yaml:"max_api_body_size"`
	MaxWHIPSessions         int     `yaml:"max_whip_sessions"`
	MaxWHEPSessions         int     `yaml:"max_whep_sessions"`
	MaxEgresses             int     `yaml:"max_egresses"`
}

// defaultLimits are the SFU's and the signaling layer's defaults.
func defaultLimits() LimitsConfig {
	s, g := sfu.DefaultLimits(), signaling.DefaultLimits()
	return LimitsConfig{
		MaxRooms: s.MaxRooms, MaxTracksPerParticipant: s.MaxTracksPerParticipant,
		MaxSimulcastLayers: s.MaxSimulcastLayers, MaxTrackNameLength: s.MaxTrackNameLength,
		MaxNameLength: s.MaxNameLength, MaxMetadataSize: s.MaxMetadataSize, MaxAttributesSize: s.MaxAttributesSize,
		MaxDataPacketSize: s.MaxDataPacketSize, DataPacketRate: s.DataPacketRate,
		DataPacketBurst: s.DataPacketBurst, DataByteRate: s.DataByteRate,
		MaxSignalMessageSize: g.MaxSignalMessageSize, SignalRate: g.SignalRate, SignalBurst: g.SignalBurst,
		MaxAPIBodySize: g.MaxAPIBodySize, MaxWHIPSessions: g.MaxWHIPSessions,
		MaxWHEPSessions: g.MaxWHEPSessions, MaxEgresses: g.MaxEgresses,
	}
}

// sfu returns the limits the SFU enforces.
func (l LimitsConfig) sfu() sfu.Limits {
	return sfu.Limits{
		MaxRooms: l.MaxRooms, MaxTracksPerParticipant: l.MaxTracksPerParticipant,
		MaxSimulcastLayers: l.MaxSimulcastLayers, MaxTrackNameLength: l.MaxTrackNameLength,
		MaxNameLength: l.MaxNameLength, MaxMetadataSize: l.MaxMetadataSize, MaxAttributesSize: l.MaxAttributesSize,
		MaxDataPacketSize: l.MaxDataPacketSize, DataPacketRate: l.DataPacketRate,
		DataPacketBurst: l.DataPacketBurst, DataByteRate: l.DataByteRate,
	}
}

// signaling returns the limits the signaling layer enforces.
func (l LimitsConfig) signaling() signaling.Limits {
	return signaling.Limits{
		MaxSignalMessageSize: l.MaxSignalMessageSize, SignalRate: l.SignalRate, SignalBurst: l.SignalBurst,
		MaxAPIBodySize: l.MaxAPIBodySize, MaxWHIPSessions: l.MaxWHIPSessions,
		MaxWHEPSessions: l.MaxWHEPSessions, MaxEgresses: l.MaxEgresses,
	}
}

// minSignalMessageSize keeps room for a large simulcast offer.
const minSignalMessageSize = 16 << 10

// validate requires every limit to be positive (a limit cannot be
// switched off), and a signal frame to hold an offer.
func (l LimitsConfig) validate() error {
	var errs []error
	for _, f := range []struct {
		key string
		val float64
	}{
		{"max_rooms", float64(l.MaxRooms)}, {"max_tracks_per_participant", float64(l.MaxTracksPerParticipant)},
		{"max_simulcast_layers", float64(l.MaxSimulcastLayers)}, {"max_track_name_length", float64(l.MaxTrackNameLength)},
		{"max_name_length", float64(l.MaxNameLength)}, {"max_metadata_size", float64(l.MaxMetadataSize)},
		{"max_attributes_size", float64(l.MaxAttributesSize)}, {"max_data_packet_size", float64(l.MaxDataPacketSize)},
		{"data_packet_rate", l.DataPacketRate}, {"data_packet_burst", float64(l.DataPacketBurst)},
		{"data_byte_rate", float64(l.DataByteRate)}, {"max_signal_message_size", float64(l.MaxSignalMessageSize)},
		{"signal_rate", l.SignalRate}, {"signal_burst", float64(l.SignalBurst)},
		{"max_api_body_size", float64(l.MaxAPIBodySize)}, {"max_whip_sessions", float64(l.MaxWHIPSessions)},
		{"max_whep_sessions", float64(l.MaxWHEPSessions)}, {"max_egresses", float64(l.MaxEgresses)},
	} {
		if f.val <= 0 {
			errs = append(errs, fmt.Errorf("limits.%s %g must be positive", f.key, f.val))
		}
	}
	if l.MaxSignalMessageSize > 0 && l.MaxSignalMessageSize < minSignalMessageSize {
		errs = append(errs, fmt.Errorf("limits.max_signal_message_size %d is below %d: an SDP offer would not fit",
			l.MaxSignalMessageSize, minSignalMessageSize))
	}
	return errors.Join(errs...)
}

package sfu

import (
	"slices"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"
)

// Data channel labels, as LiveKit clients name them.
const (
	ReliableLabel = "_reliable"
	LossyLabel    = "_lossy"
)

// MaxDataPacketSize is the default of Limits.MaxDataPacketSize: the
// largest data message relayed (bigger ones are dropped).
const MaxDataPacketSize = 64 * 1024

// maxBufferedData is how much a subscriber's data channel may queue before
// further messages to it are dropped: a slow receiver never holds up others.
const maxBufferedData = 4 << 20

// speakerInterval is how often active speakers are recomputed.
const speakerInterval = 300 * time.Millisecond

// handleData relays a data packet a participant sent on its publisher
// connection to the rest of the room.
func (r *Room) handleData(from *Participant, label string, data []byte) {
	if !from.Permission().CanPublishData {
		from.log.Debug("data packet without canPublishData, dropped")
		return
	}
	if !r.checkData(from, len(data)) {
		return
	}
	var pkt livekit.DataPacket
	if err := proto.Unmarshal(data, &pkt); err != nil {
		from.log.Debug("malformed data packet, dropped", "err", err)
		return
	}
	if _, ok := pkt.Value.(*livekit.DataPacket_Speaker); ok {
		return // server-originated only
	}
	kind := livekit.DataPacket_RELIABLE
	if label == LossyLabel {
		kind = livekit.DataPacket_LOSSY
	}
	pkt.Kind = kind
	pkt.ParticipantIdentity = string(from.identity)
	pkt.ParticipantSid = string(from.id)
	dests := pkt.DestinationIdentities
	if u := pkt.GetUser(); u != nil {
		u.ParticipantSid = string(from.id)
		u.ParticipantIdentity = string(from.identity)
		dests = append(dests, u.DestinationIdentities...)
	}
	r.sendData(from, &pkt, dests)
}

// SendData sends a data packet to the room on behalf of the server
// (RoomService.SendData): to everyone, or to the given identities.
func (r *Room) SendData(pkt *livekit.DataPacket, dests []string) {
	r.sendData(nil, pkt, dests)
}

func (r *Room) sendData(from *Participant, pkt *livekit.DataPacket, dests []string) {
	buf, err := proto.Marshal(pkt)
	if err != nil {
		r.log.Warn("marshal data packet", "err", err)
		return
	}
	for _, to := range r.Participants() {
		if to == from {
			continue
		}
		if len(dests) > 0 && !slices.Contains(dests, string(to.identity)) {
			continue
		}
		to.sub.sendData(pkt.Kind, buf)
	}
}

// sendData writes a data message on the reliable or lossy channel.
func (s *subscriber) sendData(kind livekit.DataPacket_Kind, buf []byte) {
	dc := s.reliable
	if kind == livekit.DataPacket_LOSSY {
		dc = s.lossy
	}
	if !dc.send(buf) {
		s.p.log.Debug("data message dropped: channel backlog or closed", "label", dc.dc.Label())
	}
}

// speakerObserver returns the audio level callback for a participant's tracks.
func (r *Room) speakerObserver(id livekit.ParticipantID) func(uint8) {
	return r.speakers.Observer(string(id))
}

// speakerLoop tells the room who is speaking whenever that changes.
func (r *Room) speakerLoop() {
	ticker := time.NewTicker(speakerInterval)
	defer ticker.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-ticker.C:
		}
		r.expireLayers()
		speakers, changed := r.speakers.Tick()
		if !changed {
			continue
		}
		infos := make([]*livekit.SpeakerInfo, 0, len(speakers))
		for _, s := range speakers {
			infos = append(infos, &livekit.SpeakerInfo{Sid: s.ID, Level: s.Level, Active: s.Active})
		}
		r.broadcast(&livekit.SignalResponse{Message: &livekit.SignalResponse_SpeakersChanged{
			SpeakersChanged: &livekit.SpeakersChanged{Speakers: infos},
		}})
	}
}

// expireLayers lets every published video track notice simulcast layers
// (or all its streams) that stopped arriving, which its reader goroutines
// cannot see when nothing arrives at all, and measures every track's
// layer bitrates.
func (r *Room) expireLayers() {
	for _, p := range r.Participants() {
		for _, t := range p.pub.publishedTracks() {
			if t.up.Kind() == webrtc.RTPCodecTypeVideo {
				t.up.ExpireLayers()
			}
			t.up.UpdateBitrates()
		}
	}
}

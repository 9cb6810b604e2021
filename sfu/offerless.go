package sfu

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/simulcast"
)

// Participants whose client negotiates over HTTP (WHIP publishers, WHEP
// players) make one offer per connection and take the answer from the
// response: the server never offers to them. Everything else about them
// (tracks, DownTracks, congestion control) is what any participant has.

// AnswerPublish answers an offer in which the client publishes (WHIP):
// every audio and video section it sends on becomes a track of this
// participant, its simulcast layers from the section's send rids. The
// answer carries all of the server's candidates (gathering is waited for,
// bounded by ctx), so a client that does not trickle can connect.
func (p *Participant) AnswerPublish(ctx context.Context, offer string) (string, error) {
	sd, err := parseSDP(offer)
	if err != nil {
		return "", err
	}
	var sent int
	for _, md := range sd.MediaDescriptions {
		kind := avKind(md)
		if kind == "" || !sends(md) {
			continue
		}
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		if !hasSupportedCodec(md) {
			return "", fmt.Errorf("%w: the %s section (mid %s) offers none of the codecs Fanout takes (%s)",
				ErrCodecNotNegotiated, kind, mid, supportedNames(kind))
		}
		if _, err := p.AddTrack(addTrackFor(md, kind, mid)); err != nil {
			return "", fmt.Errorf("publish the %s section (mid %s): %w", kind, mid, err)
		}
		sent++
	}
	if sent == 0 {
		return "", fmt.Errorf("%w: the offer sends no audio or video (no sendonly or sendrecv section)", ErrBadSDP)
	}
	return p.pub.pc.answer(ctx, offer)
}

// AnswerPlayback answers an offer in which the client receives (WHEP): it
// subscribes this participant to what the participant named from
// publishes, one track for each audio and video section of the offer
// (microphone and camera first; a kind not published yet is waited for
// up to publishWait), then answers. Congestion control and
// layer selection apply as for any subscriber.
func (p *Participant) AnswerPlayback(ctx context.Context, offer string, from livekit.ParticipantIdentity) (string, error) {
	sd, err := parseSDP(offer)
	if err != nil {
		return "", err
	}
	pub := p.room.Participant(from)
	if pub == nil || pub == p {
		return "", fmt.Errorf("%w: %q is not in room %q", ErrParticipantNotFound, from, p.room.Name())
	}
	tracks := awaitTracks(ctx, pub, receivedKinds(sd))
	used := map[livekit.TrackID]bool{}
	var chosen []livekit.TrackID
	for _, md := range sd.MediaDescriptions {
		kind := avKind(md)
		if kind == "" || !receives(md) {
			continue
		}
		t := bestTrack(tracks, kind, used)
		if t == nil {
			continue
		}
		if !offersAny(md, t.up.Codec()) {
			return "", fmt.Errorf("%w: %q publishes %s, which the offer's %s section does not take",
				ErrCodecNotNegotiated, from, strings.TrimPrefix(t.up.Codec().MimeType, kind+"/"), kind)
		}
		used[t.up.ID()] = true
		chosen = append(chosen, t.up.ID())
	}
	if len(chosen) == 0 {
		return "", fmt.Errorf("%w: %q publishes no track the offer can receive", ErrTrackNotFound, from)
	}
	if err := p.UpdateSubscriptions(chosen, true); err != nil {
		return "", err
	}
	return p.sub.pc.answer(ctx, offer)
}

// publishWait is how long a playback offer waits for the participant to
// publish a kind of track it asks for: a broadcaster's audio and video
// start within moments of each other, and a session answered in between
// would lack one for good (WHEP has no renegotiation).
const publishWait = 2 * time.Second

// receivedKinds is the set of kinds an offer receives.
func receivedKinds(sd *sdp.SessionDescription) map[string]bool {
	kinds := map[string]bool{}
	for _, md := range sd.MediaDescriptions {
		if k := avKind(md); k != "" && receives(md) {
			kinds[k] = true
		}
	}
	return kinds
}

// awaitTracks returns what pub publishes once it has a track of each kind
// wanted, or after publishWait (or when ctx ends) with what it has.
func awaitTracks(ctx context.Context, pub *Participant, wanted map[string]bool) []playable {
	deadline := time.Now().Add(publishWait)
	for {
		tracks := playableTracks(pub)
		missing := false
		for kind := range wanted {
			if !slices.ContainsFunc(tracks, func(c playable) bool { return c.t.up.Kind().String() == kind }) {
				missing = true
			}
		}
		if !missing || time.Now().After(deadline) || ctx.Err() != nil || pub.Closed() {
			return tracks
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// avKind is an audio or video section's kind, "" for other sections and
// for one turned off (port 0 without bundle-only, which a bundled section
// of an offer may carry instead).
func avKind(md *sdp.MediaDescription) string {
	kind := md.MediaName.Media
	if kind != "audio" && kind != "video" {
		return ""
	}
	if _, bundled := md.Attribute("bundle-only"); md.MediaName.Port.Value == 0 && !bundled {
		return ""
	}
	return kind
}

// direction is a section's direction attribute (sendrecv if none).
func direction(md *sdp.MediaDescription) string {
	for _, d := range []string{"sendonly", "recvonly", "inactive", "sendrecv"} {
		if _, ok := md.Attribute(d); ok {
			return d
		}
	}
	return "sendrecv"
}

func sends(md *sdp.MediaDescription) bool {
	d := direction(md)
	return d == "sendonly" || d == "sendrecv"
}

func receives(md *sdp.MediaDescription) bool {
	d := direction(md)
	return d == "recvonly" || d == "sendrecv"
}

// addTrackFor describes the track a publishing section carries: its cid
// is the msid track id (else the mid), its layers come from its send rids.
func addTrackFor(md *sdp.MediaDescription, kind, mid string) *livekit.AddTrackRequest {
	req := &livekit.AddTrackRequest{Cid: mid, Type: livekit.TrackType_AUDIO, Source: livekit.TrackSource_MICROPHONE, Name: "audio"}
	if id := msidTrack(md); id != "" {
		req.Cid = id
	}
	if kind == "video" {
		req.Type, req.Source, req.Name = livekit.TrackType_VIDEO, livekit.TrackSource_CAMERA, "video"
		for i, rid := range sendRIDs(md) {
			l, ok := simulcast.LayerForRID(rid)
			if !ok {
				l = int8(min(i, simulcast.MaxSpatial-1))
			}
			req.Layers = append(req.Layers, &livekit.VideoLayer{Quality: livekit.VideoQuality(l)})
		}
	}
	return req
}

// msidTrack is a section's msid track id: from a=msid, or from an
// a=ssrc line's msid (GStreamer's webrtcbin writes only that).
func msidTrack(md *sdp.MediaDescription) string {
	for _, a := range md.Attributes {
		value := a.Value
		switch {
		case a.Key == "msid":
		case a.Key == "ssrc" && strings.Contains(value, " msid:"):
			_, value, _ = strings.Cut(value, " msid:")
		default:
			continue
		}
		if f := strings.Fields(value); len(f) == 2 && f[1] != "-" {
			return f[1]
		}
	}
	return ""
}

// sendRIDs lists a section's send rids in their order.
func sendRIDs(md *sdp.MediaDescription) []string {
	var rids []string
	for _, a := range md.Attributes {
		if a.Key != "rid" {
			continue
		}
		if f := strings.Fields(a.Value); len(f) >= 2 && f[1] == "send" {
			rids = append(rids, f[0])
		}
	}
	return rids
}

// hasSupportedCodec reports whether a section offers a codec the node takes.
func hasSupportedCodec(md *sdp.MediaDescription) bool {
	for _, c := range supportedCodecs() {
		if !isRED(c.params) && offersMime(md, c.params.MimeType) {
			return true
		}
	}
	return false
}

// offersMime reports whether a section has an rtpmap for the mime type.
func offersMime(md *sdp.MediaDescription, mime string) bool {
	_, name, _ := strings.Cut(mime, "/")
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		_, enc, _ := strings.Cut(a.Value, " ")
		codec, _, _ := strings.Cut(enc, "/")
		if strings.EqualFold(codec, name) {
			return true
		}
	}
	return false
}

// offersAny reports whether a section takes a codec that can carry a
// published one (RED audio also goes out as plain Opus).
func offersAny(md *sdp.MediaDescription, published webrtc.RTPCodecParameters) bool {
	codecs, _ := SubscriberCodecs(published)
	for _, c := range codecs {
		if offersMime(md, c.MimeType) {
			return true
		}
	}
	return false
}

// supportedNames lists the codecs the node takes for a kind.
func supportedNames(kind string) string {
	var names []string
	for _, c := range supportedCodecs() {
		mk, name, _ := strings.Cut(c.params.MimeType, "/")
		if strings.EqualFold(mk, kind) && !isRED(c.params) && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return strings.Join(names, ", ")
}

// playable is a published track with its source, read under the
// publisher's lock.
type playable struct {
	t      *publishedTrack
	source livekit.TrackSource
}

// playableTracks lists what a participant publishes.
func playableTracks(pub *Participant) []playable {
	tracks := pub.pub.publishedTracks()
	out := make([]playable, 0, len(tracks))
	pub.pub.mu.Lock()
	defer pub.pub.mu.Unlock()
	for _, t := range tracks {
		out = append(out, playable{t: t, source: t.info.Source})
	}
	return out
}

// bestTrack picks the published track of a kind to play for a section:
// microphone or camera first, then screen share audio or video, then any.
func bestTrack(tracks []playable, kind string, used map[livekit.TrackID]bool) *publishedTrack {
	order := []livekit.TrackSource{livekit.TrackSource_MICROPHONE, livekit.TrackSource_SCREEN_SHARE_AUDIO}
	if kind == "video" {
		order = []livekit.TrackSource{livekit.TrackSource_CAMERA, livekit.TrackSource_SCREEN_SHARE}
	}
	var best *publishedTrack
	bestRank := len(order) + 1
	for _, c := range tracks {
		if used[c.t.up.ID()] || c.t.up.Kind().String() != kind {
			continue
		}
		rank := slices.Index(order, c.source)
		if rank < 0 {
			rank = len(order)
		}
		if rank < bestRank {
			best, bestRank = c.t, rank
		}
	}
	return best
}

// answer applies a client's offer and returns the answer with every local
// candidate in it: it waits for ICE gathering, until ctx ends.
func (c *peerConn) answer(ctx context.Context, offer string) (string, error) {
	if err := c.setRemote(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	answer, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("set local answer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("gather ICE candidates: %w", ctx.Err())
	}
	return c.pc.LocalDescription().SDP, nil
}

// ICECredentials are one side's ICE username fragment and password, with
// its candidates (a=candidate values).
type ICECredentials struct {
	Ufrag, Pwd string
	// Mid is the section the candidates are for (the bundle's first).
	Mid        string
	Candidates []string
}

// Fragment is the credentials and candidates as a trickle-ice-sdpfrag
// body (RFC 8840).
func (c ICECredentials) Fragment() string {
	var b strings.Builder
	b.WriteString("a=ice-ufrag:" + c.Ufrag + "\r\na=ice-pwd:" + c.Pwd + "\r\n")
	b.WriteString("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:" + c.Mid + "\r\n")
	for _, cand := range c.Candidates {
		b.WriteString("a=candidate:" + cand + "\r\n")
	}
	b.WriteString("a=end-of-candidates\r\n")
	return b.String()
}

// RestartICE restarts ICE on the connection the client negotiated over
// HTTP (the publisher's for WHIP, the subscriber's for WHEP), with the
// client's new credentials, and returns the server's new ones with all its
// candidates.
func (p *Participant) RestartICE(ctx context.Context, target livekit.SignalTarget, ufrag, pwd string) (ICECredentials, error) {
	c, err := p.conn(target)
	if err != nil {
		return ICECredentials{}, err
	}
	cur := c.pc.RemoteDescription()
	if cur == nil {
		return ICECredentials{}, ErrNoRemoteDescription
	}
	offer, err := withICECredentials(cur.SDP, ufrag, pwd)
	if err != nil {
		return ICECredentials{}, err
	}
	answer, err := c.answer(ctx, offer)
	if err != nil {
		return ICECredentials{}, err
	}
	return ICECredentialsOf(answer)
}

// conn is the peer connection of a signal target.
func (p *Participant) conn(target livekit.SignalTarget) (*peerConn, error) {
	switch target {
	case livekit.SignalTarget_PUBLISHER:
		return p.pub.pc, nil
	case livekit.SignalTarget_SUBSCRIBER:
		return p.sub.pc, nil
	}
	return nil, fmt.Errorf("target %d: %w", target, ErrUnknownTarget)
}

// AddICECandidate adds a remote candidate (an a=candidate value) for the
// section with the mid given, on a signal target's connection.
func (p *Participant) AddICECandidate(target livekit.SignalTarget, candidate, mid string) error {
	c, err := p.conn(target)
	if err != nil {
		return err
	}
	if err := checkCandidate(candidate); err != nil {
		return err
	}
	init := webrtc.ICECandidateInit{Candidate: candidate}
	if mid != "" {
		init.SDPMid = &mid
	}
	return c.addCandidate(init)
}

// withICECredentials is an offer with its ICE credentials replaced and its
// candidates removed (they belong to the old ICE session).
func withICECredentials(offer, ufrag, pwd string) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	replace := func(attrs []sdp.Attribute) []sdp.Attribute {
		out := attrs[:0]
		for _, a := range attrs {
			switch a.Key {
			case "ice-ufrag":
				a.Value = ufrag
			case "ice-pwd":
				a.Value = pwd
			case "candidate", "end-of-candidates":
				continue
			}
			out = append(out, a)
		}
		return out
	}
	sd.Attributes = replace(sd.Attributes)
	for _, md := range sd.MediaDescriptions {
		md.Attributes = replace(md.Attributes)
	}
	out, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	return string(out), nil
}

// ICECredentialsOf reads the ICE credentials and candidates of a
// description (those of its bundle's first section).
func ICECredentialsOf(desc string) (ICECredentials, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(desc); err != nil {
		return ICECredentials{}, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	var out ICECredentials
	out.Ufrag, _ = sd.Attribute("ice-ufrag")
	out.Pwd, _ = sd.Attribute("ice-pwd")
	if md := candidateSection(&sd); md != nil {
		out.Mid, _ = md.Attribute(sdp.AttrKeyMID)
		if out.Ufrag == "" {
			out.Ufrag, _ = md.Attribute("ice-ufrag")
			out.Pwd, _ = md.Attribute("ice-pwd")
		}
		for _, a := range md.Attributes {
			if a.IsICECandidate() {
				out.Candidates = append(out.Candidates, a.Value)
			}
		}
	}
	if out.Ufrag == "" {
		return out, fmt.Errorf("%w: no ICE credentials", ErrBadSDP)
	}
	return out, nil
}

// RemoteICEUfrag is the client's current ICE username fragment on a signal
// target's connection ("" before its offer).
func (p *Participant) RemoteICEUfrag(target livekit.SignalTarget) string {
	c, err := p.conn(target)
	if err != nil {
		return ""
	}
	d := c.pc.RemoteDescription()
	if d == nil {
		return ""
	}
	creds, err := ICECredentialsOf(d.SDP)
	if err != nil {
		return ""
	}
	return creds.Ufrag
}

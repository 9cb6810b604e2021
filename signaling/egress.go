package signaling

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"

	"github.com/fanout-sfu/fanout/egress"
	"github.com/fanout-sfu/fanout/sfu"
)

// How long a finished egress keeps serving its playlist (ended with
// #EXT-X-ENDLIST) and segments before its output is released, and how
// long ListEgress keeps showing it.
const (
	egressLinger  = time.Minute
	egressHistory = time.Hour
)

// hlsWriteTimeout bounds a blocking playlist reload: the muxer answers
// within a few part durations, or at once when the egress ends.
const hlsWriteTimeout = 30 * time.Second

// egressService implements livekit.Egress with HLS egresses of this node:
// StartTrackCompositeEgress, StartParticipantEgress, ListEgress and
// StopEgress. Every method needs the roomRecord grant.
type egressService struct {
	s  *Server
	mu sync.Mutex
	// egresses by id, finished ones included (ListEgress shows them)
	// for history after they ended.
	egresses map[string]*egressRecord
	history  time.Duration
}

// egressRecord is one egress: its info and, while it runs, its output.
type egressRecord struct {
	mu   sync.Mutex
	info *livekit.EgressInfo
	hls  *egress.HLS
	stop chan struct{}
	once sync.Once
}

var _ livekit.Egress = (*egressService)(nil)

func newEgressService(s *Server) *egressService {
	return &egressService{s: s, egresses: map[string]*egressRecord{}, history: egressHistory}
}

// handler serves the Twirp API with the caller's grants in the context.
func (es *egressService) handler() http.Handler {
	return es.s.withGrants(egressGrants, livekit.NewEgressServer(es))
}

// requireRecord checks the roomRecord grant.
func requireRecord(ctx context.Context) error {
	return requireGrant(ctx, "roomRecord", func(g *auth.VideoGrant) bool { return g.RoomRecord })
}

// StartTrackCompositeEgress muxes a room's video (H.264) and audio tracks
// into LL-HLS.
func (es *egressService) StartTrackCompositeEgress(ctx context.Context, req *livekit.TrackCompositeEgressRequest) (*livekit.EgressInfo, error) {
	if err := requireRecord(ctx); err != nil {
		return nil, err
	}
	if err := hlsOutput(req.SegmentOutputs, req.GetSegments()); err != nil {
		return nil, err
	}
	if req.VideoTrackId == "" {
		return nil, twirp.RequiredArgumentError("video_track_id")
	}
	info := &livekit.EgressInfo{
		RoomName: req.RoomName, SourceType: livekit.EgressSourceType_EGRESS_SOURCE_TYPE_SDK,
		Request: &livekit.EgressInfo_TrackComposite{TrackComposite: req},
	}
	return es.start(info, req.RoomName, livekit.TrackID(req.VideoTrackId), livekit.TrackID(req.AudioTrackId))
}

// StartParticipantEgress muxes a participant's camera (or screen share)
// and microphone into LL-HLS.
func (es *egressService) StartParticipantEgress(ctx context.Context, req *livekit.ParticipantEgressRequest) (*livekit.EgressInfo, error) {
	if err := requireRecord(ctx); err != nil {
		return nil, err
	}
	if err := hlsOutput(req.SegmentOutputs, nil); err != nil {
		return nil, err
	}
	room := es.s.p.Rooms.Room(livekit.RoomName(req.RoomName))
	if room == nil {
		return nil, twirp.NotFoundError(fmt.Sprintf("room %q does not exist", req.RoomName))
	}
	p := room.Participant(livekit.ParticipantIdentity(req.Identity))
	if p == nil {
		return nil, twirp.NotFoundError(fmt.Sprintf("participant %q is not in room %q", req.Identity, req.RoomName))
	}
	videoSource, audioSource := livekit.TrackSource_CAMERA, livekit.TrackSource_MICROPHONE
	if req.ScreenShare {
		videoSource, audioSource = livekit.TrackSource_SCREEN_SHARE, livekit.TrackSource_SCREEN_SHARE_AUDIO
	}
	var video, audio livekit.TrackID
	for _, t := range p.Info().Tracks {
		switch t.Source {
		case videoSource:
			video = livekit.TrackID(t.Sid)
		case audioSource:
			audio = livekit.TrackID(t.Sid)
		}
	}
	if video == "" {
		return nil, twirp.NewError(twirp.FailedPrecondition, fmt.Sprintf("%q publishes no %s track", req.Identity, strings.ToLower(videoSource.String())))
	}
	info := &livekit.EgressInfo{
		RoomName: req.RoomName, SourceType: livekit.EgressSourceType_EGRESS_SOURCE_TYPE_SDK,
		Request: &livekit.EgressInfo_Participant{Participant: req},
	}
	return es.start(info, req.RoomName, video, audio)
}

// hlsOutput checks the request asks for one HLS output (the only kind
// this node makes: low-latency HLS with fMP4 parts).
func hlsOutput(outputs []*livekit.SegmentedFileOutput, deprecated *livekit.SegmentedFileOutput) error {
	if deprecated != nil {
		outputs = append(outputs, deprecated)
	}
	if len(outputs) != 1 {
		return twirp.InvalidArgumentError("segment_outputs", "give exactly one SegmentedFileOutput (HLS): this node makes LL-HLS only")
	}
	return nil
}

// start creates the egress record and its HLS output.
func (es *egressService) start(info *livekit.EgressInfo, roomName string, videoID, audioID livekit.TrackID) (*livekit.EgressInfo, error) {
	room := es.s.p.Rooms.Room(livekit.RoomName(roomName))
	if room == nil {
		return nil, twirp.NotFoundError(fmt.Sprintf("room %q does not exist", roomName))
	}
	if info.EgressId == "" {
		info.EgressId = sfu.NewID("EG_")
	}
	info.RoomId = string(room.ID())
	info.Status, info.StartedAt, info.UpdatedAt = livekit.EgressStatus_EGRESS_STARTING, time.Now().UnixNano(), time.Now().UnixNano()
	info.SegmentResults = []*livekit.SegmentsInfo{{PlaylistName: "index.m3u8", PlaylistLocation: "/hls/" + info.EgressId + "/index.m3u8"}}
	rec := &egressRecord{info: info, stop: make(chan struct{})}
	params := egress.Params{ID: info.EgressId, Logger: es.s.p.Logger.With("room", roomName)}
	video, ok := room.PublishedTrack(videoID)
	if !ok {
		return nil, twirp.NotFoundError(fmt.Sprintf("video track %s is not published in room %q", videoID, roomName))
	}
	params.Video = video
	if audioID != "" {
		audio, ok := room.PublishedTrack(audioID)
		if !ok {
			return nil, twirp.NotFoundError(fmt.Sprintf("audio track %s is not published in room %q", audioID, roomName))
		}
		params.Audio = audio
	}
	es.mu.Lock()
	es.pruneLocked()
	if n, limit := es.runningLocked(), es.s.p.Limits.MaxEgresses; n >= limit {
		es.mu.Unlock()
		return nil, twirp.NewError(twirp.ResourceExhausted,
			fmt.Sprintf("%s: %d egresses running on this node, limits.max_egresses is %d", ErrTooManyEgresses, n, limit))
	}
	es.egresses[info.EgressId] = rec
	es.mu.Unlock()
	h, err := egress.Start(params)
	if err != nil {
		rec.end(livekit.EgressStatus_EGRESS_FAILED, err.Error())
		es.forgetLater()
		es.s.p.Logger.Info("egress failed", "egress", info.EgressId, "err", err)
		return rec.snapshot(), twirp.NewError(twirp.FailedPrecondition, err.Error())
	}
	rec.mu.Lock()
	rec.hls = h
	rec.mu.Unlock()
	go es.watch(rec, h)
	es.s.p.Logger.Info("egress started", "egress", info.EgressId, "room", roomName, "video", videoID, "audio", audioID)
	return rec.snapshot(), nil
}

// pruneLocked forgets egresses that ended over es.history ago, so the
// list does not grow with the node's uptime. forgetLater does it for each
// egress as it ends, this on each start and list in case one was missed.
// Callers hold es.mu.
func (es *egressService) pruneLocked() {
	cutoff := time.Now().Add(-es.history).UnixNano()
	for id, rec := range es.egresses {
		if ended := rec.endedAt(); ended != 0 && ended <= cutoff {
			delete(es.egresses, id)
		}
	}
}

// forgetLater forgets an egress that ended once es.history passed, on a
// timer: a node nobody asks for its egresses does not keep them either.
func (es *egressService) forgetLater() {
	time.AfterFunc(es.history, func() {
		es.mu.Lock()
		es.pruneLocked()
		es.mu.Unlock()
	})
}

// runningLocked counts the egresses not ended yet. Callers hold es.mu.
func (es *egressService) runningLocked() int {
	n := 0
	for _, rec := range es.egresses {
		if rec.snapshot().EndedAt == 0 {
			n++
		}
	}
	return n
}

// watch moves an egress to ACTIVE when its playlist exists, and ends it
// (COMPLETE) when stopped or when a track ends.
func (es *egressService) watch(rec *egressRecord, h *egress.HLS) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if h.Started() {
				rec.setStatus(livekit.EgressStatus_EGRESS_STARTING, livekit.EgressStatus_EGRESS_ACTIVE)
			}
			continue
		case <-rec.stop:
		case <-h.Ended():
		}
		break
	}
	rec.setStatus(livekit.EgressStatus_EGRESS_ACTIVE, livekit.EgressStatus_EGRESS_ENDING)
	rec.setStatus(livekit.EgressStatus_EGRESS_STARTING, livekit.EgressStatus_EGRESS_ENDING)
	h.Stop()
	rec.end(livekit.EgressStatus_EGRESS_COMPLETE, "")
	es.forgetLater()
	es.s.p.Logger.Info("egress complete", "egress", rec.snapshot().EgressId, "queue_drops", h.Drops())
	time.AfterFunc(egressLinger, func() {
		rec.mu.Lock()
		rec.hls = nil
		rec.mu.Unlock()
		h.Close()
	})
}

// setStatus moves the egress from one status to another.
func (rec *egressRecord) setStatus(from, to livekit.EgressStatus) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.info.Status == from {
		rec.info.Status, rec.info.UpdatedAt = to, time.Now().UnixNano()
	}
}

// end records the final status (and error) of an egress.
func (rec *egressRecord) end(status livekit.EgressStatus, errText string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	now := time.Now().UnixNano()
	rec.info.Status, rec.info.Error, rec.info.EndedAt, rec.info.UpdatedAt = status, errText, now, now
}

// endedAt is when the egress ended (unix nanoseconds), 0 while it runs.
func (rec *egressRecord) endedAt() int64 {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.info.EndedAt
}

// snapshot copies the egress's info.
func (rec *egressRecord) snapshot() *livekit.EgressInfo {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return proto.Clone(rec.info).(*livekit.EgressInfo)
}

// ListEgress lists the node's egresses, by room, id or activity.
func (es *egressService) ListEgress(ctx context.Context, req *livekit.ListEgressRequest) (*livekit.ListEgressResponse, error) {
	if err := requireRecord(ctx); err != nil {
		return nil, err
	}
	es.mu.Lock()
	es.pruneLocked()
	recs := make([]*egressRecord, 0, len(es.egresses))
	for _, rec := range es.egresses {
		recs = append(recs, rec)
	}
	es.mu.Unlock()
	out := &livekit.ListEgressResponse{}
	for _, rec := range recs {
		info := rec.snapshot()
		active := info.Status == livekit.EgressStatus_EGRESS_STARTING || info.Status == livekit.EgressStatus_EGRESS_ACTIVE
		if (req.RoomName != "" && info.RoomName != req.RoomName) || (req.EgressId != "" && info.EgressId != req.EgressId) || (req.Active && !active) {
			continue
		}
		out.Items = append(out.Items, info)
	}
	return out, nil
}

// StopEgress ends an egress: its playlist ends with #EXT-X-ENDLIST.
func (es *egressService) StopEgress(ctx context.Context, req *livekit.StopEgressRequest) (*livekit.EgressInfo, error) {
	if err := requireRecord(ctx); err != nil {
		return nil, err
	}
	es.mu.Lock()
	rec := es.egresses[req.EgressId]
	es.mu.Unlock()
	if rec == nil {
		return nil, twirp.NotFoundError(fmt.Sprintf("egress %q not found", req.EgressId))
	}
	info := rec.snapshot()
	if info.Status != livekit.EgressStatus_EGRESS_STARTING && info.Status != livekit.EgressStatus_EGRESS_ACTIVE {
		return nil, twirp.NewError(twirp.FailedPrecondition, fmt.Sprintf("egress %s is %s already", req.EgressId, info.Status))
	}
	rec.setStatus(livekit.EgressStatus_EGRESS_ACTIVE, livekit.EgressStatus_EGRESS_ENDING)
	rec.setStatus(livekit.EgressStatus_EGRESS_STARTING, livekit.EgressStatus_EGRESS_ENDING)
	rec.once.Do(func() { close(rec.stop) })
	return rec.snapshot(), nil
}

// unimplemented is the answer of the egress kinds this node does not make.
func unimplemented(kind string) error {
	return twirp.NewError(twirp.Unimplemented, kind+" egress is not available on Fanout: use StartTrackCompositeEgress or StartParticipantEgress with an HLS output")
}

// StartEgress is not available.
func (es *egressService) StartEgress(context.Context, *livekit.StartEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("generic")
}

// UpdateLayout is not available (no composites).
func (es *egressService) UpdateLayout(context.Context, *livekit.UpdateLayoutRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("layout")
}

// UpdateStream is not available (no stream outputs).
func (es *egressService) UpdateStream(context.Context, *livekit.UpdateStreamRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("stream")
}

// StartRoomCompositeEgress is not available (it needs a browser).
func (es *egressService) StartRoomCompositeEgress(context.Context, *livekit.RoomCompositeEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("room composite")
}

// StartWebEgress is not available (it needs a browser).
func (es *egressService) StartWebEgress(context.Context, *livekit.WebEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("web")
}

// StartTrackEgress is not available (it writes files of one track).
func (es *egressService) StartTrackEgress(context.Context, *livekit.TrackEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("track")
}

// serveHLS serves /hls/{egress_id}/...: the files of a running or recently
// finished egress.
func (es *egressService) serveHLS(w http.ResponseWriter, r *http.Request) {
	id, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/hls/"), "/")
	es.mu.Lock()
	rec := es.egresses[id]
	es.mu.Unlock()
	var h *egress.HLS
	if rec != nil {
		rec.mu.Lock()
		h = rec.hls
		rec.mu.Unlock()
	}
	if h == nil {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, fmt.Sprintf("no HLS egress %q on this node", id), http.StatusNotFound)
		return
	}
	if r.URL.Query().Has("_HLS_msn") {
		// A blocking playlist reload waits for a part that is not made
		// yet: its write deadline starts when the wait does, not when
		// the request arrived (HTTPTimeouts.Write).
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(hlsWriteTimeout))
	}
	http.StripPrefix("/hls/"+id, h).ServeHTTP(w, r)
}

// ingressWait bounds how long an automatic egress waits for a WHIP
// broadcaster's tracks (a second kind comes within moments of the first).
const (
	ingressWait       = 20 * time.Second
	ingressSecondKind = 2 * time.Second
)

// startForIngress gives a WHIP broadcaster an HLS egress (the
// egress.hls_for_ingress setting) and returns its id at once: the egress
// starts once the broadcaster's video is published (with its audio, if
// any comes within ingressSecondKind).
func (es *egressService) startForIngress(part *sfu.Participant) string {
	id := sfu.NewID("EG_")
	go func() {
		video, audio := waitForTracks(part)
		if video == "" {
			es.s.p.Logger.Info("no video from the broadcaster: no HLS egress", "egress", id, "identity", part.Identity())
			return
		}
		room := part.Room()
		req := &livekit.ParticipantEgressRequest{RoomName: string(room.Name()), Identity: string(part.Identity()),
			SegmentOutputs: []*livekit.SegmentedFileOutput{{Protocol: livekit.SegmentedFileProtocol_HLS_FMP4_PROTOCOL}}}
		info := &livekit.EgressInfo{EgressId: id, RoomName: req.RoomName, SourceType: livekit.EgressSourceType_EGRESS_SOURCE_TYPE_SDK,
			Request: &livekit.EgressInfo_Participant{Participant: req}}
		if _, err := es.start(info, req.RoomName, video, audio); err != nil {
			es.s.p.Logger.Info("HLS egress for the broadcaster not started", "egress", id, "err", err)
		}
	}()
	return id
}

// waitForTracks waits for a participant's camera (or any video) and
// microphone (or any audio).
func waitForTracks(part *sfu.Participant) (video, audio livekit.TrackID) {
	deadline := time.Now().Add(ingressWait)
	var videoAt time.Time
	for !part.Closed() && time.Now().Before(deadline) {
		for _, t := range part.Info().Tracks {
			switch {
			case t.Type == livekit.TrackType_VIDEO && video == "":
				video, videoAt = livekit.TrackID(t.Sid), time.Now()
			case t.Type == livekit.TrackType_AUDIO && audio == "":
				audio = livekit.TrackID(t.Sid)
			}
		}
		if video != "" && (audio != "" || time.Since(videoAt) > ingressSecondKind) {
			return video, audio
		}
		time.Sleep(50 * time.Millisecond)
	}
	return video, audio
}

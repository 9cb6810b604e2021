package signaling_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// Simulcast test media in testdata/simulcast (see its README.md).
const (
	simFileFrames   = 40                     // frames per file
	simFileKeyEvery = 20                     // keyframe interval of every file
	simFileInterval = 50 * time.Millisecond  // 20 fps
	simFileTicks    = 4500                   // 90 kHz timestamp ticks per frame
	simFileMTU      = 1200                   // largest RTP payload the publisher writes
	simJumpInterval = 200 * time.Millisecond // at most one keyframe jump per layer per interval
)

// simFileLayer is one layer of the simulcast test media.
type simFileLayer struct {
	rid     string
	quality livekit.VideoQuality
	w, h    int
}

// simFileLayers are the layers publishSimulcastFiles sends, lowest first.
var simFileLayers = []simFileLayer{
	{"q", livekit.VideoQuality_LOW, 320, 180},
	{"h", livekit.VideoQuality_MEDIUM, 640, 360},
	{"f", livekit.VideoQuality_HIGH, 1280, 720},
}

var (
	errUnknownCodec = errors.New("unknown codec")
	errNotSPS       = errors.New("not an H.264 SPS")
	errShortRBSP    = errors.New("bitstream ends early")
	errExpGolomb    = errors.New("exp-Golomb code too long")
	errBadSPS       = errors.New("unsupported SPS value")
)

// mediaFrame is one encoded frame: a VP8 frame, or an H.264 access unit in Annex B.
type mediaFrame struct {
	data []byte
	key  bool
}

var simMediaCache struct {
	mu     sync.Mutex
	layers map[string][][]mediaFrame // codec -> layer (as simFileLayers) -> frames
}

// loadSimMedia returns the frames of the three layers of codec ("vp8" or
// "h264"), read from testdata once per test binary.
func loadSimMedia(codec string) ([][]mediaFrame, error) {
	simMediaCache.mu.Lock()
	defer simMediaCache.mu.Unlock()
	if layers, ok := simMediaCache.layers[codec]; ok {
		return layers, nil
	}
	layers := make([][]mediaFrame, 0, len(simFileLayers))
	for _, l := range simFileLayers {
		frames, err := loadMediaFile(codec, l)
		if err != nil {
			return nil, err
		}
		layers = append(layers, frames)
	}
	if simMediaCache.layers == nil {
		simMediaCache.layers = map[string][][]mediaFrame{}
	}
	simMediaCache.layers[codec] = layers
	return layers, nil
}

func loadMediaFile(codec string, l simFileLayer) ([]mediaFrame, error) {
	ext := map[string]string{"vp8": "ivf", "h264": "h264"}[codec]
	if ext == "" {
		return nil, fmt.Errorf("load %q: %w", codec, errUnknownCodec)
	}
	path := filepath.Join("testdata", "simulcast", fmt.Sprintf("%s_%dx%d.%s", codec, l.w, l.h, ext))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load test media: %w", err)
	}
	var frames []mediaFrame
	switch codec {
	case "vp8":
		if frames, err = ivfFrames(data); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case "h264":
		frames = h264AccessUnits(data)
	}
	if len(frames) == 0 || !frames[0].key {
		return nil, fmt.Errorf("%s: does not start with a keyframe", path)
	}
	return frames, nil
}

// ivfFrames reads every frame of a VP8 IVF file.
func ivfFrames(data []byte) ([]mediaFrame, error) {
	r, hdr, err := ivfreader.NewWith(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("ivf header: %w", err)
	}
	if hdr.FourCC != "VP80" {
		return nil, fmt.Errorf("ivf fourcc %q: %w", hdr.FourCC, errUnknownCodec)
	}
	var frames []mediaFrame
	for {
		f, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return nil, fmt.Errorf("ivf frame %d: %w", len(frames), err)
		}
		frames = append(frames, mediaFrame{data: f, key: len(f) > 0 && f[0]&0x01 == 0})
	}
}

// annexBNALs splits an Annex B byte stream into its NAL units, without
// start codes (emulation prevention keeps 00 00 01 out of NAL units).
func annexBNALs(data []byte) [][]byte {
	var nals [][]byte
	add := func(nal []byte) {
		for len(nal) > 0 && nal[len(nal)-1] == 0 { // trailing_zero_8bits, or the 4th start code byte
			nal = nal[:len(nal)-1]
		}
		if len(nal) > 0 {
			nals = append(nals, nal)
		}
	}
	start := -1
	for i := 0; i+2 < len(data); i++ {
		if data[i] == 0 && data[i+1] == 0 && data[i+2] == 1 {
			if start >= 0 {
				add(data[start:i])
			}
			start = i + 3
			i += 2
		}
	}
	if start >= 0 {
		add(data[start:])
	}
	return nals
}

// h264AccessUnits groups the NAL units of an Annex B stream into access
// units: one starts at an SPS, PPS, SEI, AUD or prefix NAL unit, or at the
// first slice of a picture (first_mb_in_slice 0), that follows a slice.
// The test media has one slice per picture, so that suffices.
func h264AccessUnits(data []byte) []mediaFrame {
	var frames []mediaFrame
	var cur mediaFrame
	hasSlice := false
	for _, nal := range annexBNALs(data) {
		typ := nal[0] & 0x1f
		slice := typ >= 1 && typ <= 5
		firstSlice := slice && len(nal) > 1 && nal[1]&0x80 != 0 // ue(v) 0 is the single bit 1
		newAU := typ == 6 || typ == 7 || typ == 8 || typ == 9 || (typ >= 14 && typ <= 18)
		if hasSlice && (firstSlice || newAU) {
			frames = append(frames, cur)
			cur, hasSlice = mediaFrame{}, false
		}
		cur.data = append(append(cur.data, 0, 0, 0, 1), nal...)
		cur.key = cur.key || typ == 5
		hasSlice = hasSlice || slice
	}
	if len(cur.data) > 0 {
		frames = append(frames, cur)
	}
	return frames
}

// simulcastClientOptions are client options for a publishSimulcastFiles
// publisher: pion's default codecs (they include H.264 with
// packetization-mode=1;profile-level-id=42e01f) and the MID/RID extensions.
func simulcastClientOptions() client.Options {
	return client.Options{Configure: func(me *webrtc.MediaEngine, _ *interceptor.Registry) error {
		if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
			return fmt.Errorf("simulcast extensions: %w", err)
		}
		return nil
	}}
}

// simCodecCapability is the codec the publisher offers for codec.
func simCodecCapability(codec string) (webrtc.RTPCodecCapability, error) {
	feedback := []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "transport-cc"}, {Type: "ccm", Parameter: "fir"},
		{Type: "nack"}, {Type: "nack", Parameter: "pli"},
	}
	switch codec {
	case "vp8":
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: feedback}, nil
	case "h264":
		return webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: feedback,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		}, nil
	}
	return webrtc.RTPCodecCapability{}, fmt.Errorf("publish %q: %w", codec, errUnknownCodec)
}

// simPublisher sends the simulcast test media of one codec on the three
// layers of one transceiver, like a simulcast encoder: all layers in step
// every 50 ms, answering PLI/FIR with a keyframe, layers switchable.
type simPublisher struct {
	codec     string
	opts      simPublishOptions
	start     time.Time // capture clock of frame 0
	sender    *webrtc.RTPSender
	layers    []*pubLayer
	stop      chan struct{}
	done      chan struct{}
	readers   sync.WaitGroup
	stopOnce  sync.Once
	writeErrs atomic.Int64
}

// pubLayer is the sending state of one layer.
type pubLayer struct {
	rid    string
	ssrc   uint32
	out    *simLayer
	frames []mediaFrame
	pay    rtp.Payloader // sender goroutine only
	seq    uint16        // sender goroutine only

	mu       sync.Mutex
	next     int // index of the next frame to send
	active   bool
	lastJump time.Time

	plis, firs, nacks, jumps, sent, keys atomic.Int64
}

// simLayerStats counts what one layer of a simPublisher received and sent.
type simLayerStats struct {
	PLIs, FIRs, NACKs int64 // RTCP for this layer's SSRC
	Jumps             int64 // keyframe requests answered by jumping to a keyframe
	Frames, Keyframes int64 // frames sent
}

// publishSimulcastFiles publishes the test media of codec ("vp8" or "h264")
// as a three-layer simulcast track (client cid cid) and keeps sending it,
// looped, until the test ends. c must have joined with simulcastClientOptions.
func publishSimulcastFiles(t *testing.T, c *client.Client, codec, cid string) (*livekit.TrackInfo, *simPublisher) {
	t.Helper()
	return publishSimulcastFilesWith(t, c, codec, cid, simPublishOptions{})
}

// simPublishOptions make a simPublisher behave more like a browser.
type simPublishOptions struct {
	// tsBase is each layer's RTP timestamp at the first frame (by
	// simFileLayers index); zero: 90000 on every layer.
	tsBase [3]uint32
	// lag delays each frame of a layer (by rid) after the others of the
	// same instant, as a large frame of a high layer goes out later.
	lag map[string]time.Duration
	// reports makes the publisher write its own sender reports, mapping
	// each layer's timestamps to the capture clock (as browsers do), every
	// 200 ms; the client should then set a long SenderReportInterval.
	reports bool
	// source is the track's source (default CAMERA).
	source livekit.TrackSource
}

func publishSimulcastFilesWith(t *testing.T, c *client.Client, codec, cid string, opts simPublishOptions) (*livekit.TrackInfo, *simPublisher) {
	t.Helper()
	if cid == "" {
		t.Fatal("publishSimulcastFiles needs a client track id")
	}
	media, err := loadSimMedia(codec)
	if err != nil {
		t.Fatal(err)
	}
	capability, err := simCodecCapability(codec)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 15*time.Second)
	info, err := addSimulcastTrack(ctx, c, cid, opts.source)
	if err != nil {
		t.Fatal(err)
	}
	p := &simPublisher{codec: codec, opts: opts, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	tr, err := p.addTransceiver(c.Pub, capability, cid, media)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.NegotiatePublisher(ctx); err != nil {
		t.Fatalf("publish %s: %v", cid, err)
	}
	if err := p.bind(ctx, tr.Mid()); err != nil {
		t.Fatalf("publish %s: %v", cid, err)
	}
	for _, l := range p.layers {
		p.readers.Add(1)
		go p.readRTCP(l)
	}
	if opts.reports {
		p.readers.Add(1)
		go p.sendReports(c.Pub)
	}
	go p.run()
	t.Cleanup(p.Stop)
	return info, p
}

// tsAt is a layer's RTP timestamp at time at, on the capture clock.
func (p *simPublisher) tsAt(i int, at time.Time) uint32 {
	return p.tsBase(i) + uint32(at.Sub(p.start).Microseconds()*90/1000)
}

func (p *simPublisher) tsBase(i int) uint32 {
	if p.opts.tsBase == [3]uint32{} {
		return 90000
	}
	return p.opts.tsBase[i]
}

// sendReports writes a sender report for every layer every 200 ms until
// the publisher stops.
func (p *simPublisher) sendReports(pc *webrtc.PeerConnection) {
	defer p.readers.Done()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		var pkts []rtcp.Packet
		for i, l := range p.layers {
			pkts = append(pkts, &rtcp.SenderReport{SSRC: l.ssrc, NTPTime: ntpTime(now), RTPTime: p.tsAt(i, now)})
		}
		_ = pc.WriteRTCP(pkts)
	}
}

// ntpTime is t in RFC 3550's 64-bit NTP format.
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

// addSimulcastTrack announces the three-layer camera track and waits for the server's TrackInfo.
func addSimulcastTrack(ctx context.Context, c *client.Client, cid string, source livekit.TrackSource) (*livekit.TrackInfo, error) {
	if source == livekit.TrackSource_UNKNOWN {
		source = livekit.TrackSource_CAMERA
	}
	req := &livekit.AddTrackRequest{
		Cid: cid, Name: cid, Type: livekit.TrackType_VIDEO, Source: source,
		Width: 1280, Height: 720,
	}
	for _, l := range simFileLayers {
		req.Layers = append(req.Layers, &livekit.VideoLayer{Quality: l.quality, Width: uint32(l.w), Height: uint32(l.h)})
	}
	mark := c.Mark()
	if err := c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: req}}); err != nil {
		return nil, fmt.Errorf("addTrack %s: %w", cid, err)
	}
	msg, err := c.WaitAfter(ctx, mark, func(m *livekit.SignalResponse) bool {
		return m.GetTrackPublished().GetCid() == cid || m.GetRequestResponse().GetAddTrack().GetCid() == cid
	})
	if err != nil {
		return nil, fmt.Errorf("addTrack %s: %w", cid, err)
	}
	if rr := msg.GetRequestResponse(); rr != nil {
		return nil, fmt.Errorf("addTrack %s refused: %s: %s", cid, rr.Reason, rr.Message)
	}
	return msg.GetTrackPublished().Track, nil
}

// addTransceiver adds one send-only transceiver with the rid encodings q, h and f.
func (p *simPublisher) addTransceiver(pc *webrtc.PeerConnection, capability webrtc.RTPCodecCapability, cid string, media [][]mediaFrame) (*webrtc.RTPTransceiver, error) {
	for i, l := range simFileLayers {
		track, err := webrtc.NewTrackLocalStaticRTP(capability, cid, "stream-"+cid, webrtc.WithRTPStreamID(l.rid))
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.rid, err)
		}
		var pay rtp.Payloader = &codecs.H264Payloader{}
		if p.codec == "vp8" {
			pay = &codecs.VP8Payloader{EnablePictureID: true} // 15-bit PictureID, +1 per frame
		}
		p.layers = append(p.layers, &pubLayer{
			rid: l.rid, out: &simLayer{TrackLocalStaticRTP: track}, frames: media[i],
			pay: pay, seq: uint16(1000 * (i + 1)), active: true,
		})
	}
	tr, err := pc.AddTransceiverFromTrack(p.layers[0].out, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("add transceiver: %w", err)
	}
	for _, l := range p.layers[1:] {
		if err := tr.Sender().AddEncoding(l.out); err != nil {
			return nil, fmt.Errorf("add encoding %s: %w", l.rid, err)
		}
	}
	if err := tr.SetCodecPreferences([]webrtc.RTPCodecParameters{{RTPCodecCapability: capability}}); err != nil {
		return nil, fmt.Errorf("codec preferences: %w", err)
	}
	p.sender = tr.Sender()
	return tr, nil
}

// bind waits until pion has bound every layer (so simLayer knows the
// extension ids) and learns each layer's SSRC.
func (p *simPublisher) bind(ctx context.Context, mid string) error {
	bound := func() bool {
		for _, l := range p.layers {
			l.out.mu.Lock()
			l.out.mid = mid
			ok := l.out.midExt != 0 && l.out.ridExt != 0
			l.out.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !bound() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("layers not bound with mid and rid extensions: %w", ctx.Err())
		case <-tick.C:
		}
	}
	ssrcs := map[string]uint32{}
	for _, e := range p.sender.GetParameters().Encodings {
		ssrcs[e.RID] = uint32(e.SSRC)
	}
	for _, l := range p.layers {
		if l.ssrc = ssrcs[l.rid]; l.ssrc == 0 {
			return fmt.Errorf("no SSRC for layer %s in %v", l.rid, ssrcs)
		}
	}
	return nil
}

// run sends the next frame of every active layer every 50 ms; all layers
// share the timestamp of a tick.
func (p *simPublisher) run() {
	defer close(p.done)
	tick := time.NewTicker(simFileInterval)
	defer tick.Stop()
	for frame := uint32(0); ; frame++ {
		if !p.sendLayers(frame) {
			return
		}
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

// sendLayers sends one frame of every layer, the lagging ones after their
// lag; false once the publisher stops.
func (p *simPublisher) sendLayers(frame uint32) bool {
	var lagged []int
	for i, l := range p.layers {
		if p.opts.lag[l.rid] > 0 {
			lagged = append(lagged, i)
			continue
		}
		p.sendFrame(l, p.tsBase(i)+frame*simFileTicks)
	}
	for _, i := range lagged {
		select {
		case <-p.stop:
			return false
		case <-time.After(p.opts.lag[p.layers[i].rid]):
		}
		p.sendFrame(p.layers[i], p.tsBase(i)+frame*simFileTicks)
	}
	return true
}

func (p *simPublisher) sendFrame(l *pubLayer, ts uint32) {
	f, ok := l.take()
	if !ok {
		return
	}
	pkts := l.pay.Payload(simFileMTU, f.data)
	for i, payload := range pkts {
		if err := l.out.write(l.seq, ts, i == len(pkts)-1, payload); err != nil {
			p.writeErrs.Add(1)
		}
		l.seq++
	}
	l.sent.Add(1)
	if f.key {
		l.keys.Add(1)
	}
}

// take returns the layer's next frame and advances, looping to frame 0.
func (l *pubLayer) take() (mediaFrame, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return mediaFrame{}, false
	}
	f := l.frames[l.next]
	l.next = (l.next + 1) % len(l.frames)
	return f, true
}

// nextKeyframe is the index of the first keyframe at or after from, wrapping.
func nextKeyframe(frames []mediaFrame, from int) int {
	for i := range frames {
		if j := (from + i) % len(frames); frames[j].key {
			return j
		}
	}
	return 0
}

// jumpToKeyframe makes the layer's next frame a keyframe, at most once per simJumpInterval.
func (l *pubLayer) jumpToKeyframe(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lastJump.IsZero() && now.Sub(l.lastJump) < simJumpInterval {
		return
	}
	l.lastJump = now
	l.next = nextKeyframe(l.frames, l.next)
	l.jumps.Add(1)
}

// readRTCP reads the RTCP of one layer until the sender stops. It reads
// with ReadSimulcast and parses itself, so that one packet pion cannot
// parse does not end the loop. Reading also lets pion's NACK responder work.
func (p *simPublisher) readRTCP(l *pubLayer) {
	defer p.readers.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := p.sender.ReadSimulcast(buf, l.rid)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, pkt := range pkts {
			l.handleRTCP(pkt)
		}
	}
}

// handleRTCP counts feedback for this layer's SSRC (pion hands a compound
// packet to every layer it names) and answers PLI and FIR.
func (l *pubLayer) handleRTCP(pkt rtcp.Packet) {
	switch pk := pkt.(type) {
	case *rtcp.PictureLossIndication:
		if pk.MediaSSRC == l.ssrc {
			l.plis.Add(1)
			l.jumpToKeyframe(time.Now())
		}
	case *rtcp.FullIntraRequest:
		mine := pk.MediaSSRC == l.ssrc
		for _, e := range pk.FIR {
			mine = mine || e.SSRC == l.ssrc
		}
		if mine {
			l.firs.Add(1)
			l.jumpToKeyframe(time.Now())
		}
	case *rtcp.TransportLayerNack:
		if pk.MediaSSRC == l.ssrc {
			l.nacks.Add(1)
		}
	}
}

func (p *simPublisher) layer(rid string) *pubLayer {
	for _, l := range p.layers {
		if l.rid == rid {
			return l
		}
	}
	panic(fmt.Sprintf("simPublisher: no layer %q", rid))
}

// SetActive stops or resumes sending layer rid; a resumed layer starts
// with its next keyframe.
func (p *simPublisher) SetActive(rid string, on bool) {
	l := p.layer(rid)
	l.mu.Lock()
	defer l.mu.Unlock()
	if on && !l.active {
		l.next = nextKeyframe(l.frames, l.next)
	}
	l.active = on
}

// Stats returns the counters of layer rid.
func (p *simPublisher) Stats(rid string) simLayerStats {
	l := p.layer(rid)
	return simLayerStats{
		PLIs: l.plis.Load(), FIRs: l.firs.Load(), NACKs: l.nacks.Load(), Jumps: l.jumps.Load(),
		Frames: l.sent.Load(), Keyframes: l.keys.Load(),
	}
}

// SSRC returns the SSRC of layer rid.
func (p *simPublisher) SSRC(rid string) uint32 { return p.layer(rid).ssrc }

// WriteErrors counts RTP writes that failed.
func (p *simPublisher) WriteErrors() int64 { return p.writeErrs.Load() }

// Stop stops sending, stops the RTP sender (which ends the RTCP readers)
// and waits for all goroutines; it runs on t.Cleanup and may run twice.
func (p *simPublisher) Stop() {
	p.stopOnce.Do(func() {
		close(p.stop)
		<-p.done
		_ = p.sender.Stop()
		p.readers.Wait()
	})
}

// keyframeSize reads the picture size of a keyframe: frame is a depacketized
// VP8 frame, or an H.264 access unit in Annex B holding an IDR slice and an
// SPS. ok is false for delta frames and for headers it cannot read.
func keyframeSize(codec string, frame []byte) (w, h int, ok bool) {
	switch codec {
	case "vp8":
		// Frame tag (3 bytes, bit 0 clear on keyframes), start code 9d 01 2a,
		// then 16-bit little-endian width and height: 14 bits size, 2 bits scaling.
		if len(frame) < 10 || frame[0]&0x01 != 0 || !bytes.Equal(frame[3:6], []byte{0x9d, 0x01, 0x2a}) {
			return 0, 0, false
		}
		w = int(binary.LittleEndian.Uint16(frame[6:8]) & 0x3fff)
		h = int(binary.LittleEndian.Uint16(frame[8:10]) & 0x3fff)
		return w, h, w > 0 && h > 0
	case "h264":
		var sps []byte
		idr := false
		for _, nal := range annexBNALs(frame) {
			switch nal[0] & 0x1f {
			case 5:
				idr = true
			case 7:
				sps = nal
			}
		}
		if !idr || sps == nil {
			return 0, 0, false
		}
		w, h, err := h264SPSSize(sps)
		return w, h, err == nil
	}
	return 0, 0, false
}

// isKeyframeData reports whether a depacketized frame is a keyframe.
func isKeyframeData(codec string, frame []byte) bool {
	if codec == "vp8" {
		return len(frame) > 0 && frame[0]&0x01 == 0
	}
	for _, nal := range annexBNALs(frame) {
		if nal[0]&0x1f == 5 {
			return true
		}
	}
	return false
}

// TestKeyframeSizeOfTestMedia checks the test media as the tests rely on
// it (40 frames, keyframes at 0 and 20 only) and keyframeSize on it.
func TestKeyframeSizeOfTestMedia(t *testing.T) {
	for _, codec := range []string{"vp8", "h264"} {
		media, err := loadSimMedia(codec)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range simFileLayers {
			t.Run(fmt.Sprintf("%s_%dx%d", codec, l.w, l.h), func(t *testing.T) {
				frames := media[i]
				if len(frames) != simFileFrames {
					t.Fatalf("%d frames, want %d", len(frames), simFileFrames)
				}
				for j, f := range frames {
					wantKey := j%simFileKeyEvery == 0
					w, h, ok := keyframeSize(codec, f.data)
					if f.key != wantKey || ok != wantKey || isKeyframeData(codec, f.data) != wantKey {
						t.Errorf("frame %d: key %v, size read %v, want keyframe %v", j, f.key, ok, wantKey)
					}
					if ok && (w != l.w || h != l.h) {
						t.Errorf("frame %d: keyframe size %dx%d, want %dx%d", j, w, h, l.w, l.h)
					}
				}
			})
		}
	}
}

// TestSimPublisherLayerControl checks, without a server, where a layer
// continues after a keyframe request (rate-limited) and after SetActive.
func TestSimPublisherLayerControl(t *testing.T) {
	media, err := loadSimMedia("vp8")
	if err != nil {
		t.Fatal(err)
	}
	l := &pubLayer{rid: "q", frames: media[0], active: true, next: 7}
	p := &simPublisher{layers: []*pubLayer{l}}
	now := time.Now()
	l.jumpToKeyframe(now)
	if l.next != 20 {
		t.Errorf("after a PLI at frame 7 the next frame is %d, want 20", l.next)
	}
	l.next = 25
	l.jumpToKeyframe(now.Add(simJumpInterval / 2))
	if l.next != 25 {
		t.Errorf("a second PLI within %s jumped to %d", simJumpInterval, l.next)
	}
	l.jumpToKeyframe(now.Add(simJumpInterval))
	if l.next != 0 {
		t.Errorf("after a PLI at frame 25 the next frame is %d, want 0 (loop)", l.next)
	}
	l.next = 3
	p.SetActive("q", false)
	if _, ok := l.take(); ok {
		t.Error("an inactive layer sent a frame")
	}
	p.SetActive("q", true)
	if f, ok := l.take(); !ok || !f.key {
		t.Errorf("a resumed layer sent a frame %v, keyframe %v", ok, f.key)
	}
	if st := p.Stats("q"); st.Jumps != 2 {
		t.Errorf("stats %+v, want 2 jumps", st)
	}
}

// TestFrameAssembler packetizes test media as the publisher does, loses
// one packet, and checks the frames readFrames would rebuild.
func TestFrameAssembler(t *testing.T) {
	for _, codec := range []string{"vp8", "h264"} {
		t.Run(codec, func(t *testing.T) {
			media, err := loadSimMedia(codec)
			if err != nil {
				t.Fatal(err)
			}
			frames := media[1][:3]
			var pay rtp.Payloader = &codecs.H264Payloader{}
			if codec == "vp8" {
				pay = &codecs.VP8Payloader{EnablePictureID: true}
			}
			asm := &frameAssembler{codec: codec}
			var got [][]byte
			var pictureIDs []uint16
			seq := uint16(65534) // wraps
			for i, f := range frames {
				pkts := pay.Payload(simFileMTU, f.data)
				for j, payload := range pkts {
					seq++
					if i == 1 && j == 0 {
						continue // lost: frame 1 has no start
					}
					p := &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: uint32(i * simFileTicks), Marker: j == len(pkts)-1}, Payload: payload}
					if frame, pid, ok := asm.push(p); ok {
						got, pictureIDs = append(got, frame), append(pictureIDs, pid)
					}
				}
			}
			if len(got) != 2 || !bytes.Equal(got[0], frames[0].data) || !bytes.Equal(got[1], frames[2].data) {
				t.Fatalf("rebuilt %d frames, want frames 0 and 2 byte for byte", len(got))
			}
			if codec == "vp8" && !slices.Equal(pictureIDs, []uint16{0, 2}) {
				t.Errorf("picture ids %v, want [0 2]", pictureIDs)
			}
		})
	}
}

// TestH264SPSSize checks the SPS parser on SPSs ffmpeg's libx264 wrote
// (high profiles, cropping, interlace, 4:2:2, 4:4:4) and on bad input.
func TestH264SPSSize(t *testing.T) {
	for _, tc := range []struct {
		name, sps string
		w, h      int
		err       error
	}{
		{"high 1080p", "67640028acd940780227e5c044000003000400000300a03c60c658", 1920, 1080, nil},
		{"high 4:4:4", "67f4000c919b282833f1b808800000030080000014078a14cb", 320, 180, nil},
		{"high 4:2:2", "677a0016bcd940a02ff89c0440000003004000000a03c58b6580", 640, 360, nil},
		{"interlaced 1080", "67640028acd94078044fde0220000003002000000503e2c5b2c0", 1920, 1080, nil},
		// Hand-made, checked with ffmpeg's trace_headers: explicit 4x4 and 8x8 scaling
		// lists and one default list, pic_order_cnt_type 1, field coding, 1280x720.
		{"scaling lists", "6764001fad9470e0807c704040642020504c40a150884b555555555555555555555555555555550a9984a01402e7ca80", 1280, 720, nil},
		{"truncated", "6764001fad9470e0807c7040", 0, 0, errShortRBSP},
		{"not an SPS", "68ee3cb0", 0, 0, errNotSPS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nal, err := hex.DecodeString(tc.sps)
			if err != nil {
				t.Fatal(err)
			}
			w, h, err := h264SPSSize(nal)
			if !errors.Is(err, tc.err) || w != tc.w || h != tc.h {
				t.Errorf("got %dx%d, %v; want %dx%d, %v", w, h, err, tc.w, tc.h, tc.err)
			}
		})
	}
}

// TestSimulcastFilesPublish publishes the test media as simulcast and
// checks that a subscriber receives one layer of it, decodable: keyframes
// of one of the three sizes, one SSRC, no missing sequence numbers.
func TestSimulcastFilesPublish(t *testing.T) {
	for _, tc := range []struct{ codec string }{{"vp8"}, {"h264"}} {
		t.Run(tc.codec, func(t *testing.T) {
			checkLeaks(t)
			n := startNode(t, nodeOptions{})
			room := "simfile-" + tc.codec
			bob := watchFrames(n.join(t, room, "bob", client.Options{}))
			alice := n.join(t, room, "alice", simulcastClientOptions())
			info, pub := publishSimulcastFiles(t, alice, tc.codec, "cam")

			eventually(t, 10*time.Second, "bob receives two keyframes and 40 frames", func() bool {
				s := bob.stats(info.Sid)
				return len(s.Keyframes) >= 2 && s.Frames >= simFileFrames
			})
			s := bob.stats(info.Sid)
			if s.Codec != tc.codec {
				t.Errorf("bob receives %s, want %s", s.Codec, tc.codec)
			}
			sizes := []frameSize{}
			for _, l := range simFileLayers {
				sizes = append(sizes, frameSize{l.w, l.h})
			}
			for i, k := range s.Keyframes {
				if !slices.Contains(sizes, k) {
					t.Errorf("keyframe %d is %dx%d, not a published layer size", i, k.W, k.H)
				}
			}
			if s.BadKeys > 0 {
				t.Errorf("%d keyframes without a readable size", s.BadKeys)
			}
			if len(s.SSRCs) != 1 {
				t.Errorf("bob receives SSRCs %v, want one", s.SSRCs)
			}
			if gaps := seqGaps(s.Seqs); len(gaps) > 0 {
				t.Errorf("sequence numbers of %d packets skip or repeat: %v", len(s.Seqs), gaps)
			}
			if pub.WriteErrors() > 0 {
				t.Errorf("%d RTP writes failed", pub.WriteErrors())
			}
			for _, l := range simFileLayers {
				t.Logf("layer %s: %+v", l.rid, pub.Stats(l.rid))
			}
			t.Logf("bob: %d packets, %d frames, keyframes %v", len(s.Seqs), s.Frames, s.Keyframes)
		})
	}
}

package sfu

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-sfu/fanout/simulcast"
)

// A model of a Chrome VP8 simulcast publisher with three temporal
// layers (L1T3 per simulcast layer) and of what a libwebrtc subscriber does
// with the stream a DownTrack makes of it, to check that every frame
// forwarded can be decoded whatever the allocator's targets do.

// l1t3Step is one frame of libwebrtc's VP8 three-temporal-layer pattern
// (default_temporal_layers: eight frames, temporal ids 0 2 1 2 0 2 1 2).
// Every frame references the 'last' buffer, which only TL0 frames update;
// TL1 frames update 'golden', which some frames reference too. The encoder
// marks a frame layer sync (Y) when it is above TL0 and references only
// 'last': the first TL2 and the first TL1 frame of each cycle (a frame that
// would reference a 'golden' not refreshed in the current cycle, after the
// encoder dropped a frame or at a keyframe, does not reference it).
type l1t3Step struct {
	tid       uint8
	golden    bool // references 'golden'
	setLast   bool // updates 'last'
	setGolden bool // updates 'golden'
}

var l1t3Pattern = [8]l1t3Step{
	{tid: 0, setLast: true},
	{tid: 2},
	{tid: 1, setGolden: true},
	{tid: 2, golden: true},
	{tid: 0, setLast: true},
	{tid: 2, golden: true},
	{tid: 1, golden: true, setGolden: true},
	{tid: 2, golden: true},
}

// encFrame is one frame a publisher's simulcast layer encoded.
type encFrame struct {
	layer  int8
	serial uint32 // frames encoded on the layer before this one
	key    bool
	pid    uint16
	tl0    uint8
	tid    uint8
	sync   bool
	refs   []uint32 // serials of the frames it is predicted from
}

// l1t3Encoder encodes one simulcast layer as Chrome does: 15-bit picture
// ids counting frames, TL0PICIDX counting TL0 frames, and the temporal
// pattern, restarted at each keyframe (a keyframe is TL0 with Y set).
type l1t3Encoder struct {
	layer        int8
	pid          uint16
	tl0          uint8
	idx          int
	serial       uint32
	last, golden uint32 // serials of the frames in the buffers
	goldenAge    int    // frames since 'golden' was refreshed
}

func (e *l1t3Encoder) next(key bool) encFrame {
	e.idx = (e.idx + 1) % len(l1t3Pattern)
	if key {
		e.idx = 0
	}
	st := l1t3Pattern[e.idx]
	golden := !key && st.golden && e.goldenAge < e.idx
	e.goldenAge++
	if st.tid == 0 {
		e.tl0++
	}
	f := encFrame{layer: e.layer, serial: e.serial, key: key, pid: e.pid & 0x7fff, tl0: e.tl0, tid: st.tid, sync: key || (st.tid > 0 && !golden)}
	if !key {
		f.refs = append(f.refs, e.last)
		if golden {
			f.refs = append(f.refs, e.golden)
		}
	}
	if key || st.setLast {
		e.last = e.serial
	}
	if key || st.setGolden {
		e.golden, e.goldenAge = e.serial, 0
	}
	e.serial++
	e.pid++
	return f
}

// l1t3Packets is how many packets a frame of each simulcast layer takes:
// a keyframe, then a frame of TL0, TL1 and TL2.
var l1t3Packets = [simulcast.MaxSpatial][4]int{{2, 1, 1, 1}, {4, 3, 2, 1}, {8, 5, 3, 2}}

// vp8TaggedPayload is packet i of frame f: the payload descriptor Chrome
// writes, then the frame's identity for the receiver model.
func vp8TaggedPayload(f encFrame, i int) []byte {
	p := make([]byte, 40)
	p[0], p[1] = 0x80, 0xe0 // X; I, L, T
	if i == 0 {
		p[0] |= 0x10 // S, partition 0
	}
	putVP8Fields(p, f.pid, f.tl0, f.tid, f.sync, f.key)
	p[7] = byte(f.layer)
	binary.BigEndian.PutUint32(p[8:], f.serial)
	return p
}

// l1t3Publisher is a Chrome publisher sending three VP8 simulcast layers
// into an UpTrack, one frame on each per tick. Like libvpx's simulcast
// encoder it answers a PLI on any layer with a keyframe on every layer, a
// few frames later. Picture ids of the top layer wrap early.
type l1t3Publisher struct {
	up     *UpTrack
	clock  *nanoClock
	rec    *rtcpRecorder
	enc    [simulcast.MaxSpatial]l1t3Encoder
	fw     [simulcast.MaxSpatial]forwarder
	seq    [simulcast.MaxSpatial]uint16
	ts     uint32
	frames map[[2]int64]encFrame // by layer and serial
	plis   int                   // PLIs answered
	keyIn  int                   // ticks until keyframes, -1: none due
}

func newL1T3Publisher() *l1t3Publisher {
	up, clock, rec := newFixtureUpTrack(fixtureVP8, 0)
	for l := int8(1); l < simulcast.MaxSpatial; l++ {
		up.layers[l].Store(up.newLayer(l, nil, fixturePubSSRC+uint32(l)))
	}
	p := &l1t3Publisher{up: up, clock: clock, rec: rec, ts: 5000, frames: map[[2]int64]encFrame{}}
	for l := range p.enc {
		p.enc[l] = l1t3Encoder{layer: int8(l), pid: []uint16{1000, 20000, 32740}[l], tl0: []uint8{0, 240, 90}[l]}
		p.fw[l] = forwarder{up: up, layer: int8(l)}
		p.seq[l] = uint16(100 + 30000*l)
	}
	return p
}

// sendTick sends one frame on each layer, calling before (if set) ahead of
// each packet with the packet's index in the tick.
func (p *l1t3Publisher) sendTick(before func(n int)) {
	key := p.keyIn == 0
	n := 0
	for l := range p.enc {
		f := p.enc[l].next(key)
		p.frames[[2]int64{int64(l), int64(f.serial)}] = f
		count := l1t3Packets[l][1+f.tid]
		if key {
			count = l1t3Packets[l][0]
		}
		for i := 0; i < count; i++ {
			if before != nil {
				before(n)
			}
			n++
			raw := pubPacket{seq: p.seq[l], ts: p.ts + uint32(l)*1000000, marker: i == count-1, payload: vp8TaggedPayload(f, i), level: -1}.marshal(96)
			p.seq[l]++
			p.fw[l].forward(raw)
		}
	}
	p.keyIn--
	if c := p.rec.pliCount(); c > p.plis {
		p.plis = c
		if p.keyIn < 0 {
			p.keyIn = 3
		}
	}
	p.clock.advance(33 * time.Millisecond)
	p.ts += 3000
}

// vp8Receiver models what libwebrtc does with a VP8 stream it receives,
// as far as deciding which frames get decoded goes:
//
//   - the packet buffer assembles a frame from consecutive sequence
//     numbers, from a packet starting a frame to one with the marker bit;
//     a padding-only packet is part of no frame, so one among a frame's
//     packets loses that frame;
//   - the VP8 reference finder infers a frame's references from its
//     picture id, TL0PICIDX, temporal id and layer sync bit: a keyframe
//     starts a table of the last picture id on each temporal layer at its
//     TL0PICIDX; a TL0 frame needs the table of the TL0PICIDX before its
//     own (copying it) and references that table's TL0 frame; a layer sync
//     frame references only its table's TL0 frame; any other frame
//     references its table's last frame on each layer up to its own.
//     A frame whose table or references are unknown, or with a picture id
//     skipped between it and a reference, is stashed until they arrive:
//     after a lost TL0 frame, every later frame is;
//   - the frame buffer decodes, in picture id order, frames whose
//     references were decoded, and drops one at or below the last decoded
//     picture id.
//
// It also checks the truth: the input frames a decoded frame was predicted
// from were decoded, so the picture is not corrupt.
type vp8Receiver struct {
	enc      map[[2]int64]encFrame // input frames by layer and serial
	pkts     map[int64]sentPacket  // media packets by extended sequence number
	padding  map[int64]bool
	used     map[int64]bool // packets of frames assembled
	first    int64          // lowest sequence number received, once any was
	newest   int64          // -1 before the first packet
	seqs     unwrapper
	pids     unwrapper
	tl0s     unwrapper
	layers   map[int64]*[4]int64 // last picture id on each temporal layer, by TL0PICIDX
	lastPID  int64
	havePID  bool
	missing  map[int64]bool // picture ids skipped over, not yet received
	stash    []*rxFrame
	pending  []*rxFrame // handed to the frame buffer, not decoded yet
	decoded  map[int64]bool
	inputs   map[[2]int64]bool // input frames decoded
	lastDec  int64
	now      int        // the current tick, set by the caller
	log      []*rxFrame // frames decoded
	problems []string
}

// rxFrame is a frame the receiver model assembled.
type rxFrame struct {
	enc      encFrame // the input frame, from the payload tag
	pid, tl0 int64    // unwrapped output picture id and TL0PICIDX
	tid      uint8
	sync     bool
	key      bool
	refs     []int64 // picture ids the reference finder gave it
	at       int     // tick it was handed to the frame buffer
}

func (f *rxFrame) String() string {
	return fmt.Sprintf("frame pid %d tl0 %d tid %d sync %v key %v (input layer %d frame %d)",
		f.pid, f.tl0, f.tid, f.sync, f.key, f.enc.layer, f.enc.serial)
}

// unwrapper extends a wrapping counter to an int64.
type unwrapper struct {
	last int64
	have bool
}

// unwrap extends v, a counter of width mask+1, to the value nearest the
// last one.
func (u *unwrapper) unwrap(v, mask int64) int64 {
	if !u.have {
		u.last, u.have = v+(mask+1)*16, true
		return u.last
	}
	d := (v - u.last) & mask
	if d > mask/2 {
		d -= mask + 1
	}
	u.last += d
	return u.last
}

func newVP8Receiver(enc map[[2]int64]encFrame) *vp8Receiver {
	return &vp8Receiver{enc: enc, pkts: map[int64]sentPacket{}, padding: map[int64]bool{}, used: map[int64]bool{},
		newest: -1, layers: map[int64]*[4]int64{}, missing: map[int64]bool{},
		decoded: map[int64]bool{}, inputs: map[[2]int64]bool{}, lastDec: -1}
}

func (r *vp8Receiver) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// receive takes packets a DownTrack sent, in the order sent.
func (r *vp8Receiver) receive(pkts []sentPacket) {
	for _, p := range pkts {
		seq := r.seqs.unwrap(int64(p.hdr.SequenceNumber), 0xffff)
		if _, dup := r.pkts[seq]; dup || r.padding[seq] {
			continue
		}
		if r.newest < 0 {
			r.first, r.newest = seq, seq
		}
		r.first, r.newest = min(r.first, seq), max(r.newest, seq)
		if len(p.payload) == 0 {
			r.padding[seq] = true
			continue
		}
		r.pkts[seq] = p
		r.assemble(seq)
	}
}

func vp8FrameStart(p sentPacket) bool {
	var d simulcast.VP8Descriptor
	return simulcast.ParseVP8(p.payload, &d) == nil && d.FrameStart()
}

// assemble hands on the frame that packet seq completes, if any: packets
// from one starting a frame to one with the marker bit, all there.
func (r *vp8Receiver) assemble(seq int64) {
	end := seq
	for ; !r.pkts[end].hdr.Marker; end++ {
		if _, ok := r.pkts[end]; !ok {
			return
		}
	}
	start := end
	for ; !vp8FrameStart(r.pkts[start]); start-- {
		if _, ok := r.pkts[start]; !ok {
			return
		}
	}
	if r.used[start] {
		return
	}
	for s := start; s <= end; s++ {
		r.used[s] = true
	}
	r.frame(r.pkts[start])
}

// frame runs the reference finder on an assembled frame whose first packet
// is first.
func (r *vp8Receiver) frame(first sentPacket) {
	var d simulcast.VP8Descriptor
	_ = simulcast.ParseVP8(first.payload, &d)
	body := first.payload[d.Size:]
	f := &rxFrame{enc: r.enc[[2]int64{int64(body[1]), int64(binary.BigEndian.Uint32(body[2:]))}], tid: d.TID, sync: d.LayerSync, key: d.Keyframe}
	f.pid = r.pids.unwrap(int64(d.PictureID), 0x7fff)
	f.tl0 = r.tl0s.unwrap(int64(d.TL0PICIDX), 0xff)
	if !d.HasPictureID || !d.HasTL0PICIDX || !d.HasTID {
		r.problem("%v: the descriptor lacks a picture id, TL0PICIDX or TID", f)
	}
	if f.enc.tid != f.tid || f.enc.key != f.key || f.enc.sync != f.sync {
		r.problem("%v: temporal id, keyframe or sync bit differ from the input's", f)
	}
	r.notePictureID(f.pid)
	switch r.findRefs(f) {
	case refStash:
		r.stash = append(r.stash, f)
	case refHandOff:
		r.handOff(f)
		r.retryStash()
	case refDrop:
		r.problem("%v: dropped by the reference finder (an old picture id)", f)
	}
}

// notePictureID records the picture ids skipped over before pid as not yet
// received, forgetting those 100 or more behind it.
func (r *vp8Receiver) notePictureID(pid int64) {
	if !r.havePID {
		r.lastPID, r.havePID = pid, true
	}
	old := pid - 100
	for m := range r.missing {
		if m < old {
			delete(r.missing, m)
		}
	}
	r.lastPID = max(r.lastPID, old)
	for r.lastPID < pid {
		r.lastPID++
		r.missing[r.lastPID] = true
	}
}

// refDecision is what the reference finder does with a frame.
type refDecision int

const (
	refStash refDecision = iota
	refHandOff
	refDrop
)

// findRefs decides a frame's references (see vp8Receiver).
func (r *vp8Receiver) findRefs(f *rxFrame) refDecision {
	for tl0 := range r.layers {
		if tl0 < f.tl0-50 {
			delete(r.layers, tl0)
		}
	}
	if f.key {
		r.layers[f.tl0] = &[4]int64{-1, -1, -1, -1}
		r.update(f)
		return refHandOff
	}
	base := f.tl0
	if f.tid == 0 {
		base--
	}
	info, ok := r.layers[base]
	if !ok {
		return refStash
	}
	switch {
	case f.tid == 0:
		if _, ok := r.layers[f.tl0]; !ok {
			cp := *info
			r.layers[f.tl0] = &cp
		}
		if info = r.layers[f.tl0]; info[0] >= f.pid {
			return refDrop
		}
		f.refs = []int64{info[0]}
	case f.sync:
		if info[f.tid] != -1 && info[f.tid] >= f.pid {
			return refDrop
		}
		f.refs = []int64{info[0]}
	default:
		f.refs = f.refs[:0]
		for _, ref := range info[:f.tid+1] {
			switch {
			case ref == -1 || r.missingBetween(ref, f.pid):
				return refStash
			case ref >= f.pid:
				return refDrop
			}
			f.refs = append(f.refs, ref)
		}
	}
	r.update(f)
	return refHandOff
}

// missingBetween reports whether a picture id after from and before to was
// not received.
func (r *vp8Receiver) missingBetween(from, to int64) bool {
	for m := range r.missing {
		if m > from && m < to {
			return true
		}
	}
	return false
}

// update records f as the last frame on its temporal layer in the table of
// its TL0PICIDX and the following ones, up to one with a newer frame.
func (r *vp8Receiver) update(f *rxFrame) {
	for tl0 := f.tl0; ; tl0++ {
		info, ok := r.layers[tl0]
		if !ok || (info[f.tid] != -1 && info[f.tid] > f.pid) {
			break
		}
		info[f.tid] = f.pid
	}
	delete(r.missing, f.pid)
}

// retryStash runs the reference finder again on stashed frames until no
// more can be handed off.
func (r *vp8Receiver) retryStash() {
	for progress := true; progress; {
		progress = false
		kept := r.stash[:0]
		for _, f := range r.stash {
			switch r.findRefs(f) {
			case refStash:
				kept = append(kept, f)
			case refHandOff:
				r.handOff(f)
				progress = true
			case refDrop:
				r.problem("%v: dropped by the reference finder after being stashed", f)
			}
		}
		r.stash = kept
	}
}

// handOff gives a frame to the frame buffer.
func (r *vp8Receiver) handOff(f *rxFrame) {
	if f.pid <= r.lastDec {
		r.problem("%v: dropped by the frame buffer, %d was decoded", f, r.lastDec)
		return
	}
	f.at = r.now
	r.pending = append(r.pending, f)
	sort.Slice(r.pending, func(i, j int) bool { return r.pending[i].pid < r.pending[j].pid })
}

// decodeDue decodes, in picture id order, the frames handed to the frame
// buffer before tick until whose references were all decoded.
func (r *vp8Receiver) decodeDue(until int) {
	for progress := true; progress; {
		progress = false
		for i, f := range r.pending {
			if f.at < until && f.pid > r.lastDec && r.decodable(f) {
				r.decode(f)
				r.pending = append(r.pending[:i], r.pending[i+1:]...)
				progress = true
				break
			}
		}
	}
}

func (r *vp8Receiver) decodable(f *rxFrame) bool {
	for _, ref := range f.refs {
		if !r.decoded[ref] {
			return false
		}
	}
	return true
}

// decode marks f decoded, after checking that the input frames it was
// predicted from were decoded.
func (r *vp8Receiver) decode(f *rxFrame) {
	for _, s := range f.enc.refs {
		if !r.inputs[[2]int64{int64(f.enc.layer), int64(s)}] {
			r.problem("%v: decoded without frame %d of its layer, which it is predicted from (a corrupt picture)", f, s)
		}
	}
	if f.key {
		clear(r.inputs)
	}
	r.inputs[[2]int64{int64(f.enc.layer), int64(f.enc.serial)}] = true
	r.decoded[f.pid] = true
	r.lastDec = f.pid
	r.log = append(r.log, f)
}

// finish decodes what is due and reports, besides the problems seen so
// far, frames the reference finder or the frame buffer still hold, padding
// among a frame's packets, packets that are part of no frame and sequence
// numbers never received.
func (r *vp8Receiver) finish() []string {
	r.decodeDue(r.now + 1)
	for _, f := range r.stash {
		r.problem("%v: still stashed by the reference finder", f)
	}
	for _, f := range r.pending {
		r.problem("%v: references %v never decoded", f, f.refs)
	}
	r.stash, r.pending = nil, nil
	for s := r.first; s <= r.newest; s++ {
		_, media := r.pkts[s]
		switch {
		case r.padding[s] && r.inFrame(s):
			r.problem("padding at %d among a frame's packets", uint16(s))
		case media && !r.used[s]:
			r.problem("packet %d is part of no complete frame", uint16(s))
		case !media && !r.padding[s]:
			r.problem("packet %d never received", uint16(s))
		}
	}
	return r.problems
}

// inFrame reports whether padding at s lies between two packets of a frame:
// the nearest media packets around it neither end nor start a frame.
func (r *vp8Receiver) inFrame(s int64) bool {
	prev, next := s-1, s+1
	for r.padding[prev] {
		prev--
	}
	for r.padding[next] {
		next++
	}
	before, ok1 := r.pkts[prev]
	after, ok2 := r.pkts[next]
	return ok1 && ok2 && !before.hdr.Marker && !vp8FrameStart(after)
}

// l1t3Event is done to a DownTrack before packet number before of a tick
// of an l1t3Publisher (after the tick's last packet if it has fewer): set
// the target, or, if padding > 0, ask for that many probe padding packets
// from another goroutine, as the prober does.
type l1t3Event struct {
	tick, before int
	target       simulcast.Layer
	padding      int
}

// l1t3Result is what runL1T3 saw.
type l1t3Result struct {
	problems []string
	decoded  []*rxFrame
	padBytes int // bytes WritePadding reported sent
}

// runL1T3 forwards ticks of an l1t3Publisher's stream through a DownTrack
// whose target starts at start, doing events on the way, into a
// vp8Receiver that decodes frames two ticks after receiving them.
func runL1T3(t *testing.T, start simulcast.Layer, events []l1t3Event, ticks int) l1t3Result {
	t.Helper()
	p := newL1T3Publisher()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, p.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	d.SetTarget(start)
	r := newVP8Receiver(p.frames)
	var res l1t3Result
	var pads sync.WaitGroup
	var padBytes atomic.Int64
	fired := make([]bool, len(events))
	do := func(tick, n int) {
		for i, e := range events {
			if fired[i] || e.tick != tick || (e.before != n && n >= 0) {
				continue
			}
			fired[i] = true
			if e.padding == 0 {
				d.SetTarget(e.target)
				continue
			}
			pads.Add(1)
			finished := make(chan struct{})
			go func() {
				defer pads.Done()
				defer close(finished)
				padBytes.Add(int64(d.WritePadding(e.padding, 100)))
			}()
			waitPaddingBlockedOrDone(t, d, finished)
		}
	}
	done := 0
	for tick := 0; tick < ticks; tick++ {
		p.sendTick(func(n int) { do(tick, n) })
		do(tick, -1) // events before packets the tick did not have
		pads.Wait()
		sent := w.packets()
		r.now = tick
		r.receive(sent[done:])
		r.decodeDue(tick - 2)
		done = len(sent)
	}
	w.check(t)
	res.problems, res.decoded, res.padBytes = r.finish(), r.log, int(padBytes.Load())
	return res
}

// waitPaddingBlockedOrDone waits until a WritePadding call running on
// another goroutine either returned (finished closed) or waits for a frame
// to end, so that the packets after it are forwarded only then.
func waitPaddingBlockedOrDone(t *testing.T, d *DownTrack, finished <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case <-finished:
			return
		default:
		}
		d.mu.Lock()
		blocked := d.padWaiting
		d.mu.Unlock()
		if blocked {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("WritePadding neither returned nor waits for the frame to end")
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// endsAt reports how the frames decoded from tick since on (two pattern
// cycles or more) fall short of coming from the simulcast layer of want
// with every temporal id up to its temporal layer, or "".
func endsAt(decoded []*rxFrame, want simulcast.Layer, since int) string {
	var tids [4]int
	for _, f := range decoded {
		if f.at < since {
			continue
		}
		if f.enc.layer != want.Spatial {
			return fmt.Sprintf("%v decoded at the end, want layer %d", f, want.Spatial)
		}
		tids[f.tid]++
	}
	for tid := range 3 {
		if (tids[tid] > 0) != (tid <= int(want.Temporal)) {
			return fmt.Sprintf("frames decoded at the end by temporal id: %v, want those up to %d", tids[:3], want.Temporal)
		}
	}
	return ""
}

// summary lists the first problems a vp8Receiver found, one a line.
func summary(problems []string) string {
	if len(problems) > 8 {
		return fmt.Sprintf("%s\n... and %d more", strings.Join(problems[:8], "\n"), len(problems)-8)
	}
	return strings.Join(problems, "\n")
}

// layer is a Layer literal for tables.
func layer(s, t int8) simulcast.Layer { return simulcast.Layer{Spatial: s, Temporal: t} }

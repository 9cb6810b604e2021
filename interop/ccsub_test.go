package interop

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// ccEvent is one line the congestion subscriber prints on stdout (JSON).
// Times are Unix milliseconds of this machine's clock, which the test
// process outside the namespace shares.
type ccEvent struct {
	Ev    string  `json:"ev"`            // "join" (request sent), "sub" (first packet of a track), "frame", "pkt", "end"
	Kind  string  `json:"k,omitempty"`   // "v" or "a"
	T     float64 `json:"t"`             // when it happened
	W     int     `json:"w,omitempty"`   // frame: width of the last complete keyframe
	Key   bool    `json:"key,omitempty"` // frame: a keyframe
	Seq   int64   `json:"s,omitempty"`   // pkt: extended sequence number
	TS    uint32  `json:"ts,omitempty"`  // pkt (video media) and frame: RTP timestamp
	Empty bool    `json:"pad,omitempty"` // pkt: padding only (no payload)
	Err   string  `json:"err,omitempty"` // end: why reading stopped
}

// ccEmitter writes events as JSON lines, one writer shared by the track readers.
type ccEmitter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	enc *json.Encoder
}

func newCCEmitter(w io.Writer) *ccEmitter {
	bw := bufio.NewWriterSize(w, 1<<16)
	return &ccEmitter{w: bw, enc: json.NewEncoder(bw)}
}

func (e *ccEmitter) emit(ev ccEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.enc.Encode(ev)
}

// flushEvery flushes the buffered lines every 200 ms until stop closes.
func (e *ccEmitter) flushEvery(stop <-chan struct{}) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			e.mu.Lock()
			_ = e.w.Flush()
			e.mu.Unlock()
			return
		case <-tick.C:
			e.mu.Lock()
			_ = e.w.Flush()
			e.mu.Unlock()
		}
	}
}

func nowMs() float64 { return float64(time.Now().UnixNano()) / 1e6 }

// TestCongestionSubscriber is the server-sdk-go subscriber that
// TestCongestion starts inside its network namespace (through `ip netns
// exec`); in a normal test run it does nothing. It joins with
// FANOUT_CC_URL / FANOUT_CC_TOKEN, subscribes to everything, and prints a
// JSON line per received RTP packet (extended sequence number) and per
// complete video frame (all packets of the frame arrived, first
// transmission or retransmission) until FANOUT_CC_FOR has passed.
func TestCongestionSubscriber(t *testing.T) {
	wsURL, tok := os.Getenv("FANOUT_CC_URL"), os.Getenv("FANOUT_CC_TOKEN")
	if wsURL == "" {
		t.Skip("run by TestCongestion inside a network namespace")
	}
	dur, err := time.ParseDuration(os.Getenv("FANOUT_CC_FOR"))
	if err != nil {
		t.Fatalf("FANOUT_CC_FOR: %v", err)
	}
	em := newCCEmitter(os.Stdout)
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() { em.flushEvery(stop); close(flushed) }()
	var readers sync.WaitGroup
	cb := &lksdk.RoomCallback{ParticipantCallback: lksdk.ParticipantCallback{
		OnTrackSubscribed: func(track *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication, _ *lksdk.RemoteParticipant) {
			kind := "a"
			if track.Kind() == webrtc.RTPCodecTypeVideo {
				kind = "v"
			}
			em.emit(ccEvent{Ev: "sub", Kind: kind, T: nowMs()})
			readers.Add(1)
			go func() {
				defer readers.Done()
				readCCTrack(track, kind, em)
			}()
		},
	}}
	joinAt := nowMs()
	room, err := lksdk.ConnectToRoomWithToken(wsURL, tok, cb, lksdk.WithAutoSubscribe(true))
	if err != nil {
		t.Fatalf("join from the namespace: %v", err)
	}
	// The join request went out at joinAt (auto-subscribe: the server
	// subscribes at once); pion fires OnTrackSubscribed only with a track's
	// first packet, so "sub" is the first packet, not the subscription.
	em.emit(ccEvent{Ev: "join", T: joinAt})
	// Until the test closes stdin, or FANOUT_CC_FOR at most.
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-eof:
	case <-time.After(dur):
	}
	room.Disconnect()
	readers.Wait()
	em.emit(ccEvent{Ev: "end", T: nowMs()})
	close(stop)
	<-flushed
}

// readCCTrack reads one track until it ends, emitting packets and, for
// video, complete frames.
func readCCTrack(track *webrtc.TrackRemote, kind string, em *ccEmitter) {
	var ext seqExtender
	fa := newFrameTracker()
	buf := make([]byte, 1500)
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				em.emit(ccEvent{Ev: "end", Kind: kind, T: nowMs(), Err: err.Error()})
			}
			return
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) != nil {
			continue
		}
		at := nowMs()
		s := ext.extend(p.SequenceNumber)
		ev := ccEvent{Ev: "pkt", Kind: kind, T: at, Seq: s, Empty: len(p.Payload) == 0}
		if kind == "v" && !ev.Empty {
			ev.TS = p.Timestamp
		}
		em.emit(ev)
		if kind != "v" || len(p.Payload) == 0 {
			continue
		}
		if f, ok := fa.push(s, &p); ok {
			em.emit(ccEvent{Ev: "frame", Kind: kind, T: at, W: f.w, Key: f.key, TS: p.Timestamp})
		}
	}
}

// seqExtender turns 16-bit sequence numbers into int64 ones, tolerating
// reordering (a retransmission arrives late) within half the range.
type seqExtender struct {
	started bool
	highest int64
}

func (e *seqExtender) extend(seq uint16) int64 {
	if !e.started {
		e.started = true
		e.highest = int64(seq)
		return e.highest
	}
	d := int64(int16(seq - uint16(e.highest)))
	s := e.highest + d
	if s > e.highest {
		e.highest = s
	}
	return s
}

// frameTracker finds complete VP8 frames: a frame is the packets of one
// RTP timestamp, from the one that starts partition 0 (S bit, PID 0) to the
// one with the marker bit, with no sequence number missing in between.
type frameTracker struct {
	frames map[uint32]*ccFrame
	width  int // of the last complete keyframe
}

type ccFrame struct {
	start, end int64 // extended seqs; -1 until seen
	got        map[int64]bool
	key, done  bool
	w          int
	firstSeen  time.Time
}

// completeFrame is what push reports for a frame that became complete.
type completeFrame struct {
	w   int
	key bool
}

func newFrameTracker() *frameTracker { return &frameTracker{frames: map[uint32]*ccFrame{}} }

func (ft *frameTracker) push(seq int64, p *rtp.Packet) (completeFrame, bool) {
	f := ft.frames[p.Timestamp]
	if f == nil {
		f = &ccFrame{start: -1, end: -1, got: map[int64]bool{}, firstSeen: time.Now()}
		ft.frames[p.Timestamp] = f
		ft.prune()
	}
	if f.done || f.got[seq] {
		return completeFrame{}, false
	}
	f.got[seq] = true
	var vp8 codecs.VP8Packet
	payload, err := vp8.Unmarshal(p.Payload)
	if err == nil && vp8.S == 1 && vp8.PID == 0 {
		f.start = seq
		if len(payload) >= 10 && payload[0]&0x01 == 0 && payload[3] == 0x9d && payload[4] == 0x01 && payload[5] == 0x2a {
			f.key = true
			f.w = int(binary.LittleEndian.Uint16(payload[6:8]) & 0x3fff)
		}
	}
	if p.Marker {
		f.end = seq
	}
	if f.start < 0 || f.end < 0 || int64(len(f.got)) < f.end-f.start+1 {
		return completeFrame{}, false
	}
	for s := f.start; s <= f.end; s++ {
		if !f.got[s] {
			return completeFrame{}, false
		}
	}
	f.done = true
	if f.key {
		ft.width = f.w
	}
	if ft.width == 0 { // no keyframe yet: not decodable
		return completeFrame{}, false
	}
	return completeFrame{w: ft.width, key: f.key}, true
}

// prune forgets frames first seen more than 3 s ago.
func (ft *frameTracker) prune() {
	if len(ft.frames) < 200 {
		return
	}
	cut := time.Now().Add(-3 * time.Second)
	for ts, f := range ft.frames {
		if f.firstSeen.Before(cut) {
			delete(ft.frames, ts)
		}
	}
}

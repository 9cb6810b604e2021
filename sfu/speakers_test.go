package sfu

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseAudioLevel(t *testing.T) {
	tests := []struct {
		ext       []byte
		level     uint8
		voice, ok bool
	}{
		{nil, 0, false, false},
		{[]byte{}, 0, false, false},
		{[]byte{0x80 | 30}, 30, true, true},
		{[]byte{30}, 30, false, true},
		{[]byte{0x7f}, 127, false, true},
		{[]byte{0xff}, 127, true, true},
		{[]byte{0x80, 0, 0}, 0, true, true}, // padded to a word
	}
	for _, tt := range tests {
		level, voice, ok := ParseAudioLevel(tt.ext)
		if level != tt.level || voice != tt.voice || ok != tt.ok {
			t.Errorf("ParseAudioLevel(%x) = (%d, %v, %v), want (%d, %v, %v)",
				tt.ext, level, voice, ok, tt.level, tt.voice, tt.ok)
		}
	}
}

// fakeClock is an injected clock advanced by the test.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// speakerPhase is a stretch of simulated audio: every 20 ms each participant
// in talk sends a packet with its level, and Tick runs every 300 ms.
type speakerPhase struct {
	dur    time.Duration
	talk   map[string]uint8
	remove []string // removed at the start of the phase
	// Expected: active speakers (in order) after the last Tick of the
	// phase, speakers reported stopped during it, and whether any Tick
	// reported a change.
	wantActive  []string
	wantStopped []string
	wantChanged bool
}

// silent returns a talk map in which ids send silence (level 127).
func silent(ids ...string) map[string]uint8 {
	m := map[string]uint8{}
	for _, id := range ids {
		m[id] = 127
	}
	return m
}

// speakerTests are the scripted phases of TestSpeakerDetector.
var speakerTests = []struct {
	name   string
	phases []speakerPhase
}{
	{"silence: nobody", []speakerPhase{
		{dur: 3 * time.Second, talk: silent("a", "b")},
	}},
	{"one talks, stops, then gone", []speakerPhase{
		{dur: 2 * time.Second, talk: map[string]uint8{"a": 30, "b": 127}, wantActive: []string{"a"}, wantChanged: true},
		{dur: 2 * time.Second, talk: silent("a", "b"), wantStopped: []string{"a"}, wantChanged: true},
		{dur: 2 * time.Second, talk: silent("a", "b")},
	}},
	{"two talk, ordered by loudness", []speakerPhase{
		{dur: 2 * time.Second, talk: map[string]uint8{"a": 20, "b": 45}, wantActive: []string{"a", "b"}, wantChanged: true},
		{dur: 2 * time.Second, talk: map[string]uint8{"a": 45, "b": 20}, wantActive: []string{"b", "a"}, wantChanged: true},
		{dur: 2 * time.Second, talk: map[string]uint8{"a": 45, "b": 20}, wantActive: []string{"b", "a"}},
	}},
	{"brief spike is not speech", []speakerPhase{
		{dur: 300 * time.Millisecond, talk: map[string]uint8{"a": 5}},
		{dur: 3 * time.Second, talk: silent("a")},
	}},
	{"noise above the speech level is not speech", []speakerPhase{
		{dur: 3 * time.Second, talk: map[string]uint8{"a": 70}},
	}},
	{"pauses between words do not flap", []speakerPhase{
		{dur: 1200 * time.Millisecond, talk: map[string]uint8{"a": 35}, wantActive: []string{"a"}, wantChanged: true},
		{dur: 400 * time.Millisecond, talk: silent("a"), wantActive: []string{"a"}},
		{dur: 600 * time.Millisecond, talk: map[string]uint8{"a": 35}, wantActive: []string{"a"}},
		{dur: 500 * time.Millisecond, talk: silent("a"), wantActive: []string{"a"}},
		{dur: 600 * time.Millisecond, talk: map[string]uint8{"a": 35}, wantActive: []string{"a"}},
	}},
	{"removed speaker reported stopped once", []speakerPhase{
		{dur: 2 * time.Second, talk: map[string]uint8{"a": 30, "b": 40}, wantActive: []string{"a", "b"}, wantChanged: true},
		{dur: 2 * time.Second, talk: map[string]uint8{"b": 40}, remove: []string{"a"},
			wantActive: []string{"b"}, wantStopped: []string{"a"}, wantChanged: true},
	}},
}

func TestSpeakerDetector(t *testing.T) {
	for _, tt := range speakerTests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1700000000, 0)}
			d := NewSpeakerDetector(SpeakerParams{}, clk.now)
			var prev []string
			step := 0
			for pi, ph := range tt.phases {
				for _, id := range ph.remove {
					d.Remove(id)
				}
				active, stopped, changed := runSpeakerPhase(t, d, clk, ph, &step, &prev)
				if !slices.Equal(active, ph.wantActive) || !slices.Equal(stopped, ph.wantStopped) || changed != ph.wantChanged {
					t.Fatalf("phase %d: active %v stopped %v changed %v; want %v %v %v",
						pi, active, stopped, changed, ph.wantActive, ph.wantStopped, ph.wantChanged)
				}
			}
		})
	}
}

// runSpeakerPhase plays one phase and returns the active speakers after its
// last Tick, those reported stopped and whether any Tick reported a change.
// It checks that changed is reported exactly when the update differs.
func runSpeakerPhase(t *testing.T, d *SpeakerDetector, clk *fakeClock, ph speakerPhase, step *int, prev *[]string) (active, stopped []string, changed bool) {
	t.Helper()
	const packet = 20 * time.Millisecond
	active = *prev
	for elapsed := time.Duration(0); elapsed < ph.dur; elapsed += packet {
		for id, level := range ph.talk {
			d.Observe(id, level)
		}
		clk.t = clk.t.Add(packet)
		*step++
		if *step%15 != 0 {
			continue
		}
		speakers, ch := d.Tick()
		var cur, stop []string
		for _, s := range speakers {
			if s.Active {
				cur = append(cur, s.ID)
			} else {
				stop = append(stop, s.ID)
			}
			if s.Level < 0 || s.Level > 1 {
				t.Fatalf("level %v out of range", s.Level)
			}
		}
		if want := !slices.Equal(cur, *prev) || len(stop) > 0; ch != want {
			t.Fatalf("Tick changed = %v with %v (stopped %v) after %v", ch, cur, stop, *prev)
		}
		*prev, active = cur, cur
		stopped = append(stopped, stop...)
		changed = changed || ch
	}
	return active, stopped, changed
}

// TestSpeakerDetectorConcurrent observes from several goroutines while
// ticking and adding/removing participants, for -race.
func TestSpeakerDetectorConcurrent(t *testing.T) {
	d := NewSpeakerDetector(SpeakerParams{}, nil)
	var done atomic.Bool
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			id := fmt.Sprintf("PA_%d", g)
			for i := 0; !done.Load(); i++ {
				d.Observe(id, uint8(i%128))
				if i%5000 == 0 {
					d.Remove(id)
				}
			}
		}(g)
	}
	for i := 0; i < 100; i++ {
		d.Tick()
		time.Sleep(time.Millisecond)
	}
	done.Store(true)
	wg.Wait()
}

func BenchmarkSpeakerObserve(b *testing.B) {
	d := NewSpeakerDetector(SpeakerParams{}, nil)
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = fmt.Sprintf("PA_participant%d", i)
		d.Add(ids[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Observe(ids[i%len(ids)], uint8(i%64))
	}
}

// TestSpeakerObserver: the per-participant callback feeds the same state as
// Observe, and drops silence.
func TestSpeakerObserver(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	d := NewSpeakerDetector(SpeakerParams{}, clk.now)
	loud, quiet := d.Observer("PA_loud"), d.Observer("PA_quiet")
	var speakers []Speaker
	for i := 0; i < 10; i++ { // 3 s of 20 ms packets, ticked every 300 ms
		for j := 0; j < 15; j++ {
			loud(20)
			quiet(127)
		}
		clk.t = clk.t.Add(300 * time.Millisecond)
		speakers, _ = d.Tick()
	}
	if len(speakers) != 1 || speakers[0].ID != "PA_loud" || !speakers[0].Active {
		t.Fatalf("speakers = %+v, want only PA_loud active", speakers)
	}
}

func BenchmarkSpeakerObserver(b *testing.B) {
	d := NewSpeakerDetector(SpeakerParams{}, nil)
	observe := d.Observer("PA_x")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		observe(uint8(i % 60))
	}
}

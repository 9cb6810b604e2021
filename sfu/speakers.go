package sfu

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// silentLevel is the RFC 6464 level (-dBov) of digital silence.
const silentLevel = 127

// speakerSamples is how many Tick totals a participant keeps; the window
// spans at most this many Ticks.
const speakerSamples = 32

// ParseAudioLevel decodes an RFC 6464 client-to-mixer audio level extension
// payload: level is 0 (loudest) .. 127 (silence) -dBov, voice the V flag.
func ParseAudioLevel(ext []byte) (level uint8, voice bool, ok bool) {
	if len(ext) < 1 {
		return 0, false, false
	}
	return ext[0] & 0x7f, ext[0]&0x80 != 0, true
}

// SpeakerParams tunes active speaker detection; zero fields take the values
// of DefaultSpeakerParams.
type SpeakerParams struct {
	// Window is how much recent audio a decision looks at.
	Window time.Duration
	// PacketDuration is the audio carried by one packet (20 ms for Opus
	// from browsers); it turns packet counts into speaking time.
	PacketDuration time.Duration
	// SpeechLevel is the loudest level (-dBov) that still counts as
	// speech: packets with a higher (quieter) level count as silence.
	SpeechLevel uint8
	// ActivateSpeech is the speaking time within Window that makes a
	// participant an active speaker.
	ActivateSpeech time.Duration
	// DeactivateSpeech is the speaking time within Window below which an
	// active speaker stops being one; below ActivateSpeech, so pauses
	// between words do not make it flap.
	DeactivateSpeech time.Duration
}

// DefaultSpeakerParams returns the detection settings used for zero fields.
func DefaultSpeakerParams() SpeakerParams {
	return SpeakerParams{
		Window:           time.Second,
		PacketDuration:   20 * time.Millisecond,
		SpeechLevel:      55,
		ActivateSpeech:   400 * time.Millisecond,
		DeactivateSpeech: 150 * time.Millisecond,
	}
}

// withDefaults fills the zero fields of p from DefaultSpeakerParams.
func (p SpeakerParams) withDefaults() SpeakerParams {
	d := DefaultSpeakerParams()
	if p.Window <= 0 {
		p.Window = d.Window
	}
	if p.PacketDuration <= 0 {
		p.PacketDuration = d.PacketDuration
	}
	if p.SpeechLevel == 0 {
		p.SpeechLevel = d.SpeechLevel
	}
	p.SpeechLevel = min(p.SpeechLevel, silentLevel-1) // silence is never speech
	if p.ActivateSpeech <= 0 {
		p.ActivateSpeech = d.ActivateSpeech
	}
	if p.DeactivateSpeech <= 0 {
		p.DeactivateSpeech = d.DeactivateSpeech
	}
	return p
}

// Speaker is one participant in an active speaker update.
type Speaker struct {
	ID string
	// Level is the loudness over the window, 0 (silent) .. 1 (loudest
	// possible, all the time).
	Level float32
	// Active is false for a speaker reported once as having stopped.
	Active bool
}

// speakerSample is what one participant sent between two Ticks.
type speakerSample struct {
	at     int64  // Tick time, unix nanos; 0: unused
	speech uint32 // speech packets
	loud   uint32 // sum of (127 - level) over them
}

// speakerState is one participant's detection state.
type speakerState struct {
	speech  atomic.Uint32 // speech packets since the last Tick
	loud    atomic.Uint32 // sum of (127 - level) over them
	samples [speakerSamples]speakerSample
	next    int // index in samples of the next Tick's sample
	active  bool
}

// SpeakerDetector finds the active speakers of a room from the audio levels
// of their packets. Observe and Tick may be called from any goroutines.
type SpeakerDetector struct {
	params SpeakerParams
	now    func() time.Time

	mu      sync.RWMutex // write-held by Tick, Add and Remove
	parts   map[string]*speakerState
	removed []string  // active speakers removed since the last Tick
	order   []string  // active speakers reported by the last Tick, in order
	ranked  []Speaker // scratch space of Tick
}

// NewSpeakerDetector returns a detector using params (zero fields take the
// defaults) and the clock now (time.Now if nil).
func NewSpeakerDetector(params SpeakerParams, now func() time.Time) *SpeakerDetector {
	if now == nil {
		now = time.Now
	}
	return &SpeakerDetector{
		params: params.withDefaults(),
		now:    now,
		parts:  make(map[string]*speakerState),
	}
}

// Add starts tracking a participant (Observe also does on first use).
func (d *SpeakerDetector) Add(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.parts[id] == nil {
		d.parts[id] = &speakerState{}
	}
}

// Remove stops tracking a participant; if it was an active speaker, the next
// Tick reports it as stopped.
func (d *SpeakerDetector) Remove(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.parts[id]
	if st == nil {
		return
	}
	if st.active {
		d.removed = append(d.removed, id)
	}
	delete(d.parts, id)
}

// Observe records the audio level (RFC 6464, -dBov) of one packet from a
// participant. It is cheap and does not allocate once the participant is
// known.
func (d *SpeakerDetector) Observe(id string, level uint8) {
	if level > d.params.SpeechLevel {
		return // silence counts as nothing
	}
	if st := d.state(id); st != nil {
		st.observe(level)
	}
}

// Observer returns a participant's per-packet audio level callback. It
// registers the participant once, so each call is two atomic adds with no
// lock or map lookup (the track reader's hot path uses it).
func (d *SpeakerDetector) Observer(id string) func(level uint8) {
	st := d.state(id)
	speechLevel := d.params.SpeechLevel
	return func(level uint8) {
		if st != nil && level <= speechLevel {
			st.observe(level)
		}
	}
}

// state returns a participant's state, registering it if needed.
func (d *SpeakerDetector) state(id string) *speakerState {
	d.mu.RLock()
	st := d.parts[id]
	d.mu.RUnlock()
	if st == nil {
		d.Add(id)
		d.mu.RLock()
		st = d.parts[id]
		d.mu.RUnlock()
	}
	return st
}

func (st *speakerState) observe(level uint8) {
	st.speech.Add(1)
	st.loud.Add(uint32(silentLevel - level))
}

// Tick updates the decisions and returns the active speakers, loudest first,
// followed by those that just stopped (Active false, reported once). changed
// is true when the active speakers or their order changed, or one stopped.
// Call it periodically, e.g. every 300 ms.
func (d *SpeakerDetector) Tick() (speakers []Speaker, changed bool) {
	now := d.now().UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()

	ranked := d.ranked[:0]
	var stopped []Speaker
	for id, st := range d.parts {
		speech, level := st.sample(now, &d.params)
		switch {
		case st.active && speech < d.params.DeactivateSpeech:
			st.active = false
			stopped = append(stopped, Speaker{ID: id, Level: level})
		case !st.active && speech >= d.params.ActivateSpeech:
			st.active = true
		}
		if st.active {
			ranked = append(ranked, Speaker{ID: id, Level: level, Active: true})
		}
	}
	for _, id := range d.removed {
		stopped = append(stopped, Speaker{ID: id})
	}
	clear(d.removed)
	d.removed = d.removed[:0]
	slices.SortFunc(ranked, func(a, b Speaker) int {
		if c := cmp.Compare(b.Level, a.Level); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	slices.SortFunc(stopped, func(a, b Speaker) int { return cmp.Compare(a.ID, b.ID) })
	d.ranked = ranked

	changed = d.reorder(ranked) || len(stopped) > 0
	if len(ranked)+len(stopped) == 0 {
		return nil, changed
	}
	speakers = make([]Speaker, 0, len(ranked)+len(stopped))
	speakers = append(speakers, ranked...)
	return append(speakers, stopped...), changed
}

// reorder records ranked as the reported order and says whether it differs
// from the previous one. Callers hold d.mu.
func (d *SpeakerDetector) reorder(ranked []Speaker) bool {
	same := len(ranked) == len(d.order)
	for i := 0; same && i < len(ranked); i++ {
		same = ranked[i].ID == d.order[i]
	}
	if same {
		return false
	}
	clear(d.order)
	d.order = d.order[:0]
	for _, s := range ranked {
		d.order = append(d.order, s.ID)
	}
	return true
}

// sample closes the interval since the last Tick and returns the speaking
// time and loudness (0..1) over the window ending now. Only Tick calls it.
func (st *speakerState) sample(now int64, p *SpeakerParams) (time.Duration, float32) {
	st.samples[st.next] = speakerSample{at: now, speech: st.speech.Swap(0), loud: st.loud.Swap(0)}
	st.next = (st.next + 1) % speakerSamples
	var speech, loud uint64
	since := now - int64(p.Window)
	for _, s := range st.samples {
		if s.at > since && s.at <= now {
			speech += uint64(s.speech)
			loud += uint64(s.loud)
		}
	}
	spoken := time.Duration(speech) * p.PacketDuration
	level := float64(loud) / silentLevel * float64(p.PacketDuration) / float64(p.Window)
	return spoken, float32(min(level, 1))
}

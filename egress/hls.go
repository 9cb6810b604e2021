package egress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
)

// ErrNotStarted: the muxer has no playlist yet (it starts at the first
// keyframe, whose parameter sets the init segment needs).
var ErrNotStarted = errors.New("HLS output not started yet: waiting for the first keyframe")

// hlsMuxer is the low-latency HLS output of one egress: a gohlslib muxer
// started at the first keyframe, and the HTTP headers a CDN needs.
type hlsMuxer struct {
	directory string
	withAudio bool

	mu       sync.Mutex
	muxer    *gohlslib.Muxer
	video    *gohlslib.Track
	audio    *gohlslib.Track
	finished bool // no more media: playlists end with #EXT-X-ENDLIST
}

// finish marks the output complete.
func (h *hlsMuxer) finish() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.finished = true
}

// start creates the muxer for an H.264 stream with these parameter sets
// (and Opus audio if the egress has audio).
func (h *hlsMuxer) start(sps, pps []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.muxer != nil {
		return nil
	}
	video := &gohlslib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}, ClockRate: 90000}
	tracks := []*gohlslib.Track{video}
	var audio *gohlslib.Track
	if h.withAudio {
		audio = &gohlslib.Track{Codec: &codecs.Opus{ChannelCount: 2}, ClockRate: 48000}
		tracks = append(tracks, audio)
	}
	m := &gohlslib.Muxer{
		Tracks:             tracks,
		Variant:            gohlslib.MuxerVariantLowLatency,
		SegmentCount:       7,
		SegmentMinDuration: time.Second,
		PartMinDuration:    200 * time.Millisecond,
		Directory:          h.directory,
	}
	if err := m.Start(); err != nil {
		return fmt.Errorf("start HLS muxer: %w", err)
	}
	h.muxer, h.video, h.audio = m, video, audio
	return nil
}

// started reports whether the muxer runs.
func (h *hlsMuxer) started() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.muxer != nil
}

// writeVideo writes an access unit at pts (90 kHz).
func (h *hlsMuxer) writeVideo(ntp time.Time, pts int64, au [][]byte) error {
	h.mu.Lock()
	m, t := h.muxer, h.video
	h.mu.Unlock()
	if m == nil {
		return ErrNotStarted
	}
	return m.WriteH264(t, ntp, pts, au)
}

// writeAudio writes an Opus packet at pts (48 kHz).
func (h *hlsMuxer) writeAudio(ntp time.Time, pts int64, packet []byte) error {
	h.mu.Lock()
	m, t := h.muxer, h.audio
	h.mu.Unlock()
	if m == nil || t == nil {
		return ErrNotStarted
	}
	return m.WriteOpus(t, ntp, pts, [][]byte{packet})
}

// close stops the muxer.
func (h *hlsMuxer) close() {
	h.mu.Lock()
	m := h.muxer
	h.muxer = nil
	h.mu.Unlock()
	if m != nil {
		m.Close()
	}
}

// Cache lifetimes: segments, parts and the init segment never change once
// published; playlists change with every part.
const (
	immutableCache = "public, max-age=31536000, immutable"
	playlistCache  = "public, max-age=1"
	// A blocking reload (_HLS_msn) names a future playlist version: that
	// response stays valid as long as the segments it lists.
	blockingPlaylistCache = "public, max-age=6"
)

// ServeHTTP serves the playlists, init segment, segments and parts by
// file name (the caller strips its prefix), with CORS and cache headers.
func (h *hlsMuxer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", "*")
	hdr.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "HLS is read with GET", http.StatusMethodNotAllowed)
		return
	}
	h.mu.Lock()
	m, finished := h.muxer, h.finished
	h.mu.Unlock()
	if m == nil {
		hdr.Set("Cache-Control", "no-store")
		http.Error(w, ErrNotStarted.Error(), http.StatusNotFound)
		return
	}
	playlist := strings.HasSuffix(path.Base(r.URL.Path), ".m3u8")
	if playlist && finished {
		h.serveFinished(w, r, m)
		return
	}
	cache := immutableCache
	if playlist {
		cache = playlistCache
		if r.URL.Query().Has("_HLS_msn") {
			cache = blockingPlaylistCache
		}
	}
	cw := &cacheWriter{ResponseWriter: w, cache: cache}
	m.Handle(cw, r)
	if !cw.wrote {
		hdr.Set("Cache-Control", "no-store")
		http.Error(w, "no such HLS file", http.StatusNotFound)
	}
}

// serveFinished serves a playlist of a finished output: a media playlist
// gets #EXT-X-ENDLIST and loses its preload hint, and a blocking reload is
// answered at once (the part it waits for will never come).
func (h *hlsMuxer) serveFinished(w http.ResponseWriter, r *http.Request, m *gohlslib.Muxer) {
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = ""
	rec := &bufferWriter{header: http.Header{}, code: http.StatusOK}
	m.Handle(rec, r2)
	if rec.code != http.StatusOK || rec.body.Len() == 0 {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "no such HLS file", http.StatusNotFound)
		return
	}
	body := rec.body.String()
	if strings.Contains(body, "#EXT-X-TARGETDURATION") {
		var b strings.Builder
		for _, line := range strings.SplitAfter(body, "\n") {
			if !strings.HasPrefix(line, "#EXT-X-PRELOAD-HINT") && !strings.HasPrefix(line, "#EXT-X-ENDLIST") {
				b.WriteString(line)
			}
		}
		b.WriteString("#EXT-X-ENDLIST\n")
		body = b.String()
	}
	w.Header().Set("Content-Type", rec.header.Get("Content-Type"))
	w.Header().Set("Cache-Control", immutableCache)
	_, _ = io.WriteString(w, body)
}

// cacheWriter replaces the muxer's Cache-Control of successful responses
// with ours, and notes whether the muxer answered at all.
type cacheWriter struct {
	http.ResponseWriter
	cache string
	wrote bool
}

func (c *cacheWriter) WriteHeader(status int) {
	c.wrote = true
	if status == http.StatusOK {
		c.Header().Set("Cache-Control", c.cache)
	} else {
		c.Header().Set("Cache-Control", "no-store")
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *cacheWriter) Write(b []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(b)
}

// Flush passes a flush on (the muxer streams parts as they grow).
func (c *cacheWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// bufferWriter keeps a response in memory, to rewrite it before sending.
type bufferWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferWriter) Header() http.Header         { return b.header }
func (b *bufferWriter) WriteHeader(code int)        { b.code = code }
func (b *bufferWriter) Write(p []byte) (int, error) { return b.body.Write(p) }

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

var (
	errNoKeyframe = errors.New("does not start with a keyframe")
	errNotVP8     = errors.New("not VP8")
	errEmpty      = errors.New("no frames")
	errBadOgg     = errors.New("not an Ogg page")
)

// simLayer is one simulcast layer the publisher sends: its rid, size and file.
type simLayer struct {
	rid  string
	w, h int
}

// simLayers are the layers publish sends, lowest first (the test media's sizes).
var simLayers = []simLayer{{"q", 320, 180}, {"h", 640, 360}, {"f", 1280, 720}}

// vp8Frame is one encoded VP8 frame.
type vp8Frame struct {
	data []byte
	key  bool
}

// loadVP8 reads every frame of dir/vp8_WxH.ivf for each layer.
func loadVP8(dir string) ([][]vp8Frame, error) {
	out := make([][]vp8Frame, 0, len(simLayers))
	for _, l := range simLayers {
		path := filepath.Join(dir, fmt.Sprintf("vp8_%dx%d.ivf", l.w, l.h))
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("video layer %s: %w", l.rid, err)
		}
		frames, err := ivfFrames(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, frames)
	}
	return out, nil
}

func ivfFrames(data []byte) ([]vp8Frame, error) {
	r, hdr, err := ivfreader.NewWith(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("ivf header: %w", err)
	}
	if hdr.FourCC != "VP80" {
		return nil, fmt.Errorf("fourcc %q: %w", hdr.FourCC, errNotVP8)
	}
	var frames []vp8Frame
	for {
		f, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ivf frame %d: %w", len(frames), err)
		}
		frames = append(frames, vp8Frame{data: f, key: len(f) > 0 && f[0]&0x01 == 0})
	}
	if len(frames) == 0 {
		return nil, errEmpty
	}
	if !frames[0].key {
		return nil, errNoKeyframe
	}
	return frames, nil
}

// loadOpus reads the Opus packets of an Ogg file, skipping the OpusHead
// and OpusTags header packets. It splits pages into packets by their lacing
// values (ffmpeg puts several 20 ms packets in one page).
func loadOpus(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audio: %w", err)
	}
	pkts, err := oggPackets(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out [][]byte
	for _, p := range pkts {
		if bytes.HasPrefix(p, []byte("OpusHead")) || bytes.HasPrefix(p, []byte("OpusTags")) {
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w", path, errEmpty)
	}
	return out, nil
}

// oggPackets splits an Ogg stream (one logical stream) into its packets.
func oggPackets(data []byte) ([][]byte, error) {
	var pkts [][]byte
	var cur []byte
	for off := 0; off < len(data); {
		if len(data)-off < 27 || !bytes.Equal(data[off:off+4], []byte("OggS")) {
			return nil, fmt.Errorf("offset %d: %w", off, errBadOgg)
		}
		nseg := int(data[off+26])
		lacing := off + 27
		body := lacing + nseg
		if body > len(data) {
			return nil, fmt.Errorf("offset %d: segment table: %w", off, errBadOgg)
		}
		for _, n := range data[lacing:body] {
			if body+int(n) > len(data) {
				return nil, fmt.Errorf("offset %d: segment: %w", off, errBadOgg)
			}
			cur = append(cur, data[body:body+int(n)]...)
			body += int(n)
			if n < 255 {
				pkts = append(pkts, cur)
				cur = nil
			}
		}
		off = body
	}
	return pkts, nil
}

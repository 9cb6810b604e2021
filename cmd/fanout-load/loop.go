package main

import (
	"fmt"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media"
)

// run sends a frame of every layer every 50 ms (all layers share a tick's
// timestamp) and an Opus packet every 20 ms, until Stop.
func (p *publisher) run() {
	defer close(p.done)
	vtick := time.NewTicker(frameInterval)
	defer vtick.Stop()
	atick := time.NewTicker(audioInterval)
	defer atick.Stop()
	ts := uint32(90000)
	for a := 0; ; {
		select {
		case <-p.stop:
			return
		case <-vtick.C:
			for _, l := range p.layers {
				if err := l.sendFrame(ts); err != nil {
					p.fail(err)
				}
			}
			ts += frameTicks
		case <-atick.C:
			if p.audio == nil {
				continue
			}
			if err := p.audio.WriteSample(media.Sample{Data: p.audioPkts[a], Duration: audioInterval}); err != nil {
				p.fail(fmt.Errorf("audio: %w", err))
			}
			a = (a + 1) % len(p.audioPkts)
		}
	}
}

// sendFrame packetizes and writes the layer's next frame.
func (l *sendLayer) sendFrame(ts uint32) error {
	l.mu.Lock()
	f := l.frames[l.next]
	l.next = (l.next + 1) % len(l.frames)
	midExt, ridExt, mid := l.midExt, l.ridExt, l.mid
	l.mu.Unlock()
	pkts := l.pay.Payload(rtpMTU, f.data)
	for i, payload := range pkts {
		h := rtp.Header{Version: 2, SequenceNumber: l.seq, Timestamp: ts, Marker: i == len(pkts)-1}
		l.seq++
		if err := h.SetExtension(midExt, []byte(mid)); err != nil {
			return fmt.Errorf("layer %s: mid extension: %w", l.rid, err)
		}
		if err := h.SetExtension(ridExt, []byte(l.rid)); err != nil {
			return fmt.Errorf("layer %s: rid extension: %w", l.rid, err)
		}
		if err := l.WriteRTP(&rtp.Packet{Header: h, Payload: payload}); err != nil {
			return fmt.Errorf("layer %s: write: %w", l.rid, err)
		}
	}
	l.sent.Add(1)
	if f.key {
		l.keys.Add(1)
	}
	return nil
}

// jumpToKeyframe makes the layer's next frame its next keyframe (a PLI or
// FIR), at most once per jumpInterval.
func (l *sendLayer) jumpToKeyframe(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lastJump.IsZero() && now.Sub(l.lastJump) < jumpInterval {
		return
	}
	l.lastJump = now
	for i := range l.frames {
		if j := (l.next + i) % len(l.frames); l.frames[j].key {
			l.next = j
			return
		}
	}
}

// readRTCP reads one layer's RTCP until the sender stops, answering PLI and
// FIR and counting NACKs (pion's NACK responder answers them).
func (p *publisher) readRTCP(l *sendLayer) {
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
					l.plis.Add(1) // counted with PLIs: both ask for a keyframe
					l.jumpToKeyframe(time.Now())
				}
			case *rtcp.TransportLayerNack:
				if pk.MediaSSRC == l.ssrc {
					l.nacks.Add(1)
				}
			}
		}
	}
}

// fail records the first error that stops sending and wakes runPublish.
func (p *publisher) fail(err error) {
	p.failOnce.Do(func() {
		p.failErr.Store(&err)
		close(p.failed)
	})
}

func (p *publisher) err() error {
	if e := p.failErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Stop ends sending and waits for every goroutine; it may run twice.
func (p *publisher) Stop() {
	p.stopOnce.Do(func() {
		close(p.stop)
		<-p.done
		if p.sender != nil {
			_ = p.sender.Stop()
		}
		p.readers.Wait()
	})
}

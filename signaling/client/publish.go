package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"
)

// Publish announces a track with addTrack, adds it to the publisher
// connection and negotiates; it returns the server's TrackInfo.
func (c *Client) Publish(ctx context.Context, track webrtc.TrackLocal, req *livekit.AddTrackRequest) (*livekit.TrackInfo, *webrtc.RTPSender, error) {
	if req.Cid == "" {
		req.Cid = track.ID()
	}
	mark := c.Mark()
	if err := c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: req}}); err != nil {
		return nil, nil, err
	}
	msg, err := c.WaitAfter(ctx, mark, func(m *livekit.SignalResponse) bool {
		if tp := m.GetTrackPublished(); tp != nil {
			return tp.Cid == req.Cid
		}
		if rr := m.GetRequestResponse(); rr != nil {
			return rr.GetAddTrack().GetCid() == req.Cid
		}
		return false
	})
	if err != nil {
		return nil, nil, fmt.Errorf("addTrack: %w", err)
	}
	if rr := msg.GetRequestResponse(); rr != nil {
		return nil, nil, fmt.Errorf("addTrack refused: %s: %s", rr.Reason, rr.Message)
	}
	tr, err := c.Pub.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, nil, fmt.Errorf("add transceiver: %w", err)
	}
	if err := c.NegotiatePublisher(ctx); err != nil {
		return nil, nil, err
	}
	return msg.GetTrackPublished().Track, tr.Sender(), nil
}

// NegotiatePublisher sends an offer on the publisher connection and waits
// for the server's answer.
func (c *Client) NegotiatePublisher(ctx context.Context) error {
	c.negMu.Lock()
	defer c.negMu.Unlock()
	offer, err := c.Pub.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	if err := c.Pub.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("set offer: %w", err)
	}
	mark := c.Mark()
	err = c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{
		Offer: &livekit.SessionDescription{Type: "offer", Sdp: offer.SDP, Id: 1},
	}})
	if err != nil {
		return err
	}
	_, err = c.WaitAfter(ctx, mark, func(m *livekit.SignalResponse) bool { return m.GetAnswer() != nil })
	if err != nil {
		return fmt.Errorf("waiting for answer: %w", err)
	}
	return nil
}

// SendData sends a user packet on the reliable or lossy channel; the
// publisher connection must be negotiated (Publish or NegotiatePublisher).
func (c *Client) SendData(pkt *livekit.DataPacket, reliable bool) error {
	data, err := proto.Marshal(pkt)
	if err != nil {
		return fmt.Errorf("marshal data: %w", err)
	}
	dc := c.pubReliable
	if !reliable {
		dc = c.pubLossy
	}
	return dc.Send(data)
}

// WaitData waits for a received data packet matching pred.
func (c *Client) WaitData(ctx context.Context, pred func(*livekit.DataPacket) bool) (*livekit.DataPacket, error) {
	var found *livekit.DataPacket
	err := c.waitUntil(ctx, func() (bool, error) {
		c.dataMu.Lock()
		defer c.dataMu.Unlock()
		for _, p := range c.data {
			if pred(p) {
				found = p
				return true, nil
			}
		}
		return false, nil
	})
	return found, err
}

// ReceivedData returns a copy of the data packets received so far.
func (c *Client) ReceivedData() []*livekit.DataPacket {
	c.dataMu.Lock()
	defer c.dataMu.Unlock()
	return append([]*livekit.DataPacket(nil), c.data...)
}

// Tracks returns the remote tracks received so far.
func (c *Client) Tracks() []*webrtc.TrackRemote {
	c.tracksMu.Lock()
	defer c.tracksMu.Unlock()
	return append([]*webrtc.TrackRemote(nil), c.tracks...)
}

func jsonCandidate(ic *webrtc.ICECandidate) (string, error) {
	b, err := json.Marshal(ic.ToJSON())
	if err != nil {
		return "", fmt.Errorf("candidate json: %w", err)
	}
	return string(b), nil
}

func parseCandidate(s string) (webrtc.ICECandidateInit, error) {
	var init webrtc.ICECandidateInit
	if err := json.Unmarshal([]byte(s), &init); err != nil {
		return init, fmt.Errorf("candidate json: %w", err)
	}
	return init, nil
}

// DataReady reports whether the publisher's reliable and lossy data
// channels are open.
func (c *Client) DataReady() bool {
	return c.pubReliable.ReadyState() == webrtc.DataChannelStateOpen &&
		c.pubLossy.ReadyState() == webrtc.DataChannelStateOpen
}

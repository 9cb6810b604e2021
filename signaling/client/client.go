// Package client is a small Go client of LiveKit's signaling protocol over
// plain pion peer connections. Fanout's integration tests and load tool use
// it to act as a participant exactly as any SDK would on the wire.
package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"
)

// Options configures a client.
type Options struct {
	// AutoSubscribe subscribes to every track (default true via Connect).
	NoAutoSubscribe bool
	// TokenInHeader sends the token as Authorization: Bearer (as server-sdk-go does).
	TokenInHeader bool
	// Configure may add interceptors or codecs to the pion API (tests use it
	// to drop packets); the default codecs and interceptors are registered first.
	Configure func(*webrtc.MediaEngine, *interceptor.Registry) error
	// Header adds HTTP headers to the WebSocket handshake.
	Header http.Header
	// Settings may adjust pion's setting engine after the defaults.
	Settings func(*webrtc.SettingEngine)
	// SenderReportInterval, if set, replaces pion's 1 s between RTCP
	// sender reports (a test that writes its own sets it very long).
	SenderReportInterval time.Duration
	// NoTransportCC leaves transport-cc out (no feedback for the server's
	// estimator, which then keeps its start value): for tests of the node
	// itself that must not depend on congestion control.
	NoTransportCC bool
	// OnTrack, when set, is called for each track the subscriber
	// connection receives, from the first one: set here, before joining,
	// it misses none (Client.OnTrack replaces it later).
	OnTrack func(*webrtc.TrackRemote, *webrtc.RTPReceiver)
}

// Client is one participant.
type Client struct {
	conn *websocket.Conn
	// Join is the server's join response.
	Join *livekit.JoinResponse
	Pub  *webrtc.PeerConnection
	Sub  *webrtc.PeerConnection

	writeMu sync.Mutex
	negMu   sync.Mutex

	mu      sync.Mutex
	cond    *sync.Cond
	log     []*livekit.SignalResponse
	readErr error
	closed  bool

	tracksMu sync.Mutex
	tracks   []*webrtc.TrackRemote
	onTrack  func(*webrtc.TrackRemote, *webrtc.RTPReceiver)
	dataMu   sync.Mutex
	data     []*livekit.DataPacket
	done     chan struct{}

	pubReliable *webrtc.DataChannel
	pubLossy    *webrtc.DataChannel
}

// Connect joins a room: serverURL is ws://host:port, token an access token.
func Connect(ctx context.Context, serverURL, token string, opts Options) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("server url: %w", err)
	}
	u.Path = "/rtc"
	q := u.Query()
	q.Set("protocol", "16")
	q.Set("sdk", "go-test")
	if opts.NoAutoSubscribe {
		q.Set("auto_subscribe", "0")
	}
	header := http.Header{}
	for k, v := range opts.Header {
		header[k] = v
	}
	if opts.TokenInHeader {
		header.Set("Authorization", "Bearer "+token)
	} else {
		q.Set("access_token", token)
	}
	u.RawQuery = q.Encode()
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, u.String(), header)
	if err != nil {
		if resp != nil {
			return nil, &HTTPError{Status: resp.StatusCode, Body: readBody(resp)}
		}
		return nil, fmt.Errorf("dial %s: %w", u.Redacted(), err)
	}
	c := &Client{conn: conn, done: make(chan struct{}), onTrack: opts.OnTrack}
	c.cond = sync.NewCond(&c.mu)
	if err := c.setupPCs(opts); err != nil {
		_ = conn.Close()
		return nil, err
	}
	go c.readLoop()
	msg, err := c.WaitFor(ctx, func(m *livekit.SignalResponse) bool { return m.GetJoin() != nil })
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("waiting for join: %w", err)
	}
	c.Join = msg.GetJoin()
	return c, nil
}

// HTTPError is a join refused before the WebSocket upgrade.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("http %d: %s", e.Status, e.Body) }

func readBody(resp *http.Response) string {
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	return string(buf[:n])
}

func (c *Client) setupPCs(opts Options) error {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return fmt.Errorf("codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	if opts.Configure != nil {
		if err := opts.Configure(me, ir); err != nil {
			return err
		}
	}
	var icOpts []webrtc.InterceptorOption
	if opts.SenderReportInterval > 0 {
		icOpts = append(icOpts, webrtc.WithReportSenderOptions(report.SenderInterval(opts.SenderReportInterval)))
	}
	if err := registerInterceptors(me, ir, opts, icOpts); err != nil {
		return fmt.Errorf("interceptors: %w", err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if opts.Settings != nil {
		opts.Settings(&se)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	var err error
	if c.Pub, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return fmt.Errorf("publisher pc: %w", err)
	}
	if c.Sub, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return fmt.Errorf("subscriber pc: %w", err)
	}
	ordered := true
	if c.pubReliable, err = c.Pub.CreateDataChannel("_reliable", &webrtc.DataChannelInit{Ordered: &ordered}); err != nil {
		return fmt.Errorf("data channel: %w", err)
	}
	unordered, zero := false, uint16(0)
	if c.pubLossy, err = c.Pub.CreateDataChannel("_lossy", &webrtc.DataChannelInit{Ordered: &unordered, MaxRetransmits: &zero}); err != nil {
		return fmt.Errorf("data channel: %w", err)
	}
	c.Pub.OnICECandidate(func(ic *webrtc.ICECandidate) { c.trickle(ic, livekit.SignalTarget_PUBLISHER) })
	c.Sub.OnICECandidate(func(ic *webrtc.ICECandidate) { c.trickle(ic, livekit.SignalTarget_SUBSCRIBER) })
	c.Sub.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		c.tracksMu.Lock()
		c.tracks = append(c.tracks, t)
		cb := c.onTrack
		c.tracksMu.Unlock()
		if cb != nil {
			cb(t, r)
		}
	})
	c.Sub.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			pkt := &livekit.DataPacket{}
			if proto.Unmarshal(m.Data, pkt) == nil {
				c.dataMu.Lock()
				c.data = append(c.data, pkt)
				c.dataMu.Unlock()
				c.mu.Lock()
				c.cond.Broadcast()
				c.mu.Unlock()
			}
		})
	})
	return nil
}

// OnTrack sets the callback for subscribed tracks (set it before they arrive).
func (c *Client) OnTrack(f func(*webrtc.TrackRemote, *webrtc.RTPReceiver)) {
	c.tracksMu.Lock()
	c.onTrack = f
	c.tracksMu.Unlock()
}

func (c *Client) trickle(ic *webrtc.ICECandidate, target livekit.SignalTarget) {
	if ic == nil {
		return
	}
	js, err := jsonCandidate(ic)
	if err != nil {
		return
	}
	_ = c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{
		Trickle: &livekit.TrickleRequest{CandidateInit: js, Target: target},
	}})
}

// Send writes one request as a binary protobuf frame.
func (c *Client) Send(req *livekit.SignalRequest) error {
	data, err := proto.Marshal(req)
	if err != nil {
		return fmt.Errorf("marshal: %w", err)
	}
	return c.SendRaw(websocket.BinaryMessage, data)
}

// SendRaw writes an arbitrary frame (tests use it for malformed input).
func (c *Client) SendRaw(kind int, data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.conn.WriteMessage(kind, data)
}

func (c *Client) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		msg := &livekit.SignalResponse{}
		if err := proto.Unmarshal(data, msg); err != nil {
			continue
		}
		c.handle(msg)
		c.mu.Lock()
		c.log = append(c.log, msg)
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

func (c *Client) handle(msg *livekit.SignalResponse) {
	switch m := msg.Message.(type) {
	case *livekit.SignalResponse_Offer:
		go c.answer(m.Offer)
	case *livekit.SignalResponse_Answer:
		_ = c.Pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.Answer.Sdp})
	case *livekit.SignalResponse_Trickle:
		init, err := parseCandidate(m.Trickle.CandidateInit)
		if err != nil {
			return
		}
		pc := c.Pub
		if m.Trickle.Target == livekit.SignalTarget_SUBSCRIBER {
			pc = c.Sub
		}
		_ = pc.AddICECandidate(init)
	}
}

func (c *Client) answer(offer *livekit.SessionDescription) {
	c.negMu.Lock()
	defer c.negMu.Unlock()
	if err := c.Sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.Sdp}); err != nil {
		return
	}
	ans, err := c.Sub.CreateAnswer(nil)
	if err != nil {
		return
	}
	if err := c.Sub.SetLocalDescription(ans); err != nil {
		return
	}
	_ = c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Answer{
		Answer: &livekit.SessionDescription{Type: "answer", Sdp: ans.SDP, Id: offer.Id},
	}})
}

// ErrClosed is returned by waits once the signal connection is gone.
var ErrClosed = errors.New("signal connection closed")

// WaitFor returns the first message (received at any time) matching pred.
func (c *Client) WaitFor(ctx context.Context, pred func(*livekit.SignalResponse) bool) (*livekit.SignalResponse, error) {
	return c.waitFrom(ctx, 0, pred)
}

// Mark returns the current position in the message log, for WaitAfter.
func (c *Client) Mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.log)
}

// WaitAfter is WaitFor over messages received after a Mark.
func (c *Client) WaitAfter(ctx context.Context, mark int, pred func(*livekit.SignalResponse) bool) (*livekit.SignalResponse, error) {
	return c.waitFrom(ctx, mark, pred)
}

func (c *Client) waitFrom(ctx context.Context, from int, pred func(*livekit.SignalResponse) bool) (*livekit.SignalResponse, error) {
	var found *livekit.SignalResponse
	i := from
	err := c.waitUntil(ctx, func() (bool, error) {
		for ; i < len(c.log); i++ {
			if pred(c.log[i]) {
				found = c.log[i]
				return true, nil
			}
		}
		if c.readErr != nil {
			return false, fmt.Errorf("%w: %v", ErrClosed, c.readErr)
		}
		return false, nil
	})
	return found, err
}

// waitUntil calls check under c.mu each time something arrives, until it
// reports done or an error, or ctx ends.
func (c *Client) waitUntil(ctx context.Context, check func() (bool, error)) error {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if done, err := check(); done || err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		c.cond.Wait()
	}
}

// WaitClosed waits until the server closes the signal connection and
// returns the read error (a *websocket.CloseError carries the reason).
func (c *Client) WaitClosed(ctx context.Context) error {
	select {
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.readErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close leaves the room and releases everything.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	_ = c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Leave{Leave: &livekit.LeaveRequest{
		Reason: livekit.DisconnectReason_CLIENT_INITIATED, Action: livekit.LeaveRequest_DISCONNECT,
	}}})
	c.Drop()
}

// Drop vanishes without a leave: sockets close, peer connections stop.
func (c *Client) Drop() {
	_ = c.conn.Close()
	<-c.done
	c.negMu.Lock()
	_ = c.Pub.Close()
	_ = c.Sub.Close()
	c.negMu.Unlock()
}

// registerInterceptors adds pion's default interceptors, without
// transport-cc when the options say so.
func registerInterceptors(me *webrtc.MediaEngine, ir *interceptor.Registry, opts Options, icOpts []webrtc.InterceptorOption) error {
	if !opts.NoTransportCC {
		return webrtc.RegisterDefaultInterceptorsWithOptions(me, ir, icOpts...)
	}
	var senderOpts []report.SenderOption
	if opts.SenderReportInterval > 0 {
		senderOpts = append(senderOpts, report.SenderInterval(opts.SenderReportInterval))
	}
	if err := webrtc.ConfigureNack(me, ir); err != nil {
		return err
	}
	if err := webrtc.ConfigureRTCPReportsWithOptions(ir, nil, senderOpts...); err != nil {
		return err
	}
	return webrtc.ConfigureSimulcastExtensionHeaders(me)
}

package sfu

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
)

// TransportParams configures the sockets every peer connection of the node shares.
type TransportParams struct {
	// BindIP is the address the UDP and TCP sockets listen on ("" = all).
	BindIP string
	// UDPPort is the one muxed UDP port for all peers.
	UDPPort int
	// TCPPort is the ICE-TCP port (0 disables ICE-TCP).
	TCPPort int
	// NodeIP, when set, is advertised as the host candidate address (1:1 NAT).
	NodeIP string
	// ICEServers are handed to clients in the join response.
	ICEServers []webrtc.ICEServer
	// Net, when set, replaces the operating system's network: tests run
	// nodes on pion's virtual network (vnet) to shape their links. ICE-TCP
	// is off on it.
	Net transport.Net
}

// Transport owns the node's muxed UDP and TCP sockets and builds the pion API
// objects for publisher and subscriber peer connections.
type Transport struct {
	udpConn     net.PacketConn
	tcpListener net.Listener
	udpMux      interface{ Close() error }
	tcpMux      interface{ Close() error }
	// sendDrops counts packets the UDP socket dropped for a full send
	// buffer (its writes never block).
	sendDrops func() uint64
	publisher *webrtc.API
	// A subscriber connection gets its own API: its interceptors include
	// the connection's transport-wide congestion recorder.
	settings     webrtc.SettingEngine
	subscriberME *webrtc.MediaEngine
}

// iceDisconnectedTimeout is how long a connection may be silent before
// ICE calls it disconnected.
const iceDisconnectedTimeout = 3 * time.Second

// Codecs the node accepts from publishers and offers to subscribers.
var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"}, {Type: "transport-cc"}, {Type: "ccm", Parameter: "fir"},
	{Type: "nack"}, {Type: "nack", Parameter: "pli"},
}

type codecSpec struct {
	params webrtc.RTPCodecParameters
	rtxPT  webrtc.PayloadType // 0: no RTX
}

func supportedCodecs() []codecSpec {
	video := func(mime, fmtp string, pt, rtx webrtc.PayloadType) codecSpec {
		return codecSpec{params: webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: videoFeedback,
			},
			PayloadType: pt,
		}, rtxPT: rtx}
	}
	return []codecSpec{
		{params: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: []webrtc.RTCPFeedback{{Type: "transport-cc"}},
		}, PayloadType: 111}},
		{params: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: "audio/red", ClockRate: 48000, Channels: 2, SDPFmtpLine: "111/111",
		}, PayloadType: 63}},
		video(webrtc.MimeTypeVP8, "", 96, 97),
		video(webrtc.MimeTypeVP9, "profile-id=0", 98, 99),
		video(webrtc.MimeTypeVP9, "profile-id=2", 100, 101),
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 102, 103),
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 104, 105),
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", 106, 107),
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f", 108, 109),
		// High: OBS's and x264's default, decoded by every browser.
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f", 112, 113),
		video(webrtc.MimeTypeAV1, "", 45, 46),
	}
}

// Header extensions negotiated with publishers and subscribers.
var (
	publisherAudioExtensions = []string{sdp.SDESMidURI, sdp.AudioLevelURI, sdp.TransportCCURI}
	publisherVideoExtensions = []string{
		sdp.SDESMidURI, sdp.SDESRTPStreamIDURI, sdp.SDESRepairRTPStreamIDURI,
		sdp.TransportCCURI, sdp.ABSSendTimeURI,
	}
	subscriberAudioExtensions = []string{sdp.SDESMidURI, sdp.AudioLevelURI, sdp.TransportCCURI}
	subscriberVideoExtensions = []string{sdp.SDESMidURI, sdp.TransportCCURI}
)

func newMediaEngine(withRTX bool, audioExt, videoExt []string) (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range supportedCodecs() {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.params.MimeType, "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c.params, kind); err != nil {
			return nil, fmt.Errorf("register codec %s: %w", c.params.MimeType, err)
		}
		if withRTX && c.rtxPT != 0 {
			rtx := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeRTX, ClockRate: 90000,
				SDPFmtpLine: "apt=" + strconv.Itoa(int(c.params.PayloadType)),
			}, PayloadType: c.rtxPT}
			if err := m.RegisterCodec(rtx, kind); err != nil {
				return nil, fmt.Errorf("register rtx: %w", err)
			}
		}
	}
	for kind, uris := range map[webrtc.RTPCodecType][]string{
		webrtc.RTPCodecTypeAudio: audioExt, webrtc.RTPCodecTypeVideo: videoExt,
	} {
		for _, uri := range uris {
			ext := webrtc.RTPHeaderExtensionCapability{URI: uri}
			if err := m.RegisterHeaderExtension(ext, kind); err != nil {
				return nil, fmt.Errorf("register extension %s: %w", uri, err)
			}
		}
	}
	return m, nil
}

// NewTransport opens the node's muxed UDP port and ICE-TCP listener.
func NewTransport(p TransportParams) (*Transport, error) {
	udpConn, err := listenUDP(p)
	if err != nil {
		return nil, fmt.Errorf("listen udp %d: %w", p.UDPPort, err)
	}
	wrapped, drops, err := nonBlockingSocket(udpConn)
	if err != nil {
		_ = udpConn.Close()
		return nil, fmt.Errorf("udp %d: %w", p.UDPPort, err)
	}
	udpConn = wrapped
	t := &Transport{udpConn: udpConn, sendDrops: drops}
	se := webrtc.SettingEngine{}
	var udpMux ice.UDPMux
	if p.Net != nil {
		se.SetNet(p.Net)
		udpMux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: udpConn, Net: p.Net})
	} else {
		udpMux = webrtc.NewICEUDPMux(nil, udpConn)
	}
	t.udpMux = udpMux
	se.SetICEUDPMux(udpMux)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if p.TCPPort > 0 && p.Net == nil {
		l, err := net.Listen("tcp", net.JoinHostPort(p.BindIP, strconv.Itoa(p.TCPPort)))
		if err != nil {
			_ = udpMux.Close()
			return nil, fmt.Errorf("listen tcp %d: %w", p.TCPPort, err)
		}
		t.tcpListener = l
		tcpMux := webrtc.NewICETCPMux(nil, queuedListener{l}, 64)
		t.tcpMux = tcpMux
		se.SetICETCPMux(tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(networks)
	se.SetIncludeLoopbackCandidate(isLoopback(p.BindIP) || isLoopback(p.NodeIP))
	if p.NodeIP != "" {
		se.SetNAT1To1IPs([]string{p.NodeIP}, webrtc.ICECandidateTypeHost)
	}
	// Disconnected after 3 s without a packet: media, RTCP or STUN every
	// second or more often is normal for every client. A WHIP or WHEP
	// session ends there (its client cannot signal a restart otherwise);
	// others wait for failed, 15 s more, or their client's ICE restart.
	se.SetICETimeouts(iceDisconnectedTimeout, 15*time.Second, time.Second)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if err := t.buildAPIs(se); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// listenUDP opens the node's muxed UDP socket, on p.Net when set.
func listenUDP(p TransportParams) (net.PacketConn, error) {
	addr := net.JoinHostPort(p.BindIP, strconv.Itoa(p.UDPPort))
	if p.Net != nil {
		return p.Net.ListenPacket("udp", addr)
	}
	return net.ListenPacket("udp", addr)
}

func isLoopback(ip string) bool {
	parsed := net.ParseIP(ip)
	return parsed != nil && parsed.IsLoopback()
}

func (t *Transport) buildAPIs(se webrtc.SettingEngine) error {
	pubME, err := newMediaEngine(true, publisherAudioExtensions, publisherVideoExtensions)
	if err != nil {
		return err
	}
	pubIR := &interceptor.Registry{}
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return fmt.Errorf("nack generator: %w", err)
	}
	pubIR.Add(gen)
	recv, err := report.NewReceiverInterceptor()
	if err != nil {
		return fmt.Errorf("receiver reports: %w", err)
	}
	pubIR.Add(recv)
	if err := webrtc.ConfigureTWCCSender(pubME, pubIR); err != nil {
		return fmt.Errorf("twcc sender: %w", err)
	}
	t.publisher = webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(pubME),
		webrtc.WithInterceptorRegistry(pubIR))

	subME, err := newMediaEngine(false, subscriberAudioExtensions, subscriberVideoExtensions)
	if err != nil {
		return err
	}
	t.settings, t.subscriberME = se, subME
	return nil
}

// subscriberAPI builds the API of one subscriber connection: sender
// reports, and cc reading the subscriber's congestion feedback (the
// DownTracks stamp transport-wide sequence numbers themselves).
func (t *Transport) subscriberAPI(cc interceptor.Factory) (*webrtc.API, error) {
	ir := &interceptor.Registry{}
	if cc != nil {
		ir.Add(cc)
	}
	sender, err := report.NewSenderInterceptor(report.SenderUseLatestPacket())
	if err != nil {
		return nil, fmt.Errorf("sender reports: %w", err)
	}
	ir.Add(sender)
	return webrtc.NewAPI(webrtc.WithSettingEngine(t.settings), webrtc.WithMediaEngine(t.subscriberME),
		webrtc.WithInterceptorRegistry(ir)), nil
}

// NewPublisherPC creates the peer connection a client publishes on.
func (t *Transport) NewPublisherPC() (*webrtc.PeerConnection, error) {
	pc, err := t.publisher.NewPeerConnection(webrtc.Configuration{SDPSemantics: webrtc.SDPSemanticsUnifiedPlan})
	if err != nil {
		return nil, fmt.Errorf("new publisher pc: %w", err)
	}
	return pc, nil
}

// NewSubscriberPC creates the peer connection a client receives media on;
// cc, if not nil, is the interceptor factory of its congestion control.
func (t *Transport) NewSubscriberPC(cc interceptor.Factory) (*webrtc.PeerConnection, error) {
	api, err := t.subscriberAPI(cc)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{SDPSemantics: webrtc.SDPSemanticsUnifiedPlan})
	if err != nil {
		return nil, fmt.Errorf("new subscriber pc: %w", err)
	}
	return pc, nil
}

// isRED reports whether a codec is RFC 2198 redundant audio.
func isRED(c webrtc.RTPCodecParameters) bool { return strings.EqualFold(c.MimeType, "audio/red") }

// SubscriberCodecs returns the codec preferences of a subscription: the
// codec that carries the published one unchanged, and for RED audio plain
// Opus as a fallback (the DownTrack then forwards RED's primary encoding).
func SubscriberCodecs(published webrtc.RTPCodecParameters) ([]webrtc.RTPCodecParameters, bool) {
	c, ok := SubscriberCodec(published)
	if !ok {
		return nil, false
	}
	out := []webrtc.RTPCodecParameters{c}
	if isRED(published) {
		if opus, ok := SubscriberCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}}); ok {
			out = append(out, opus)
		}
	}
	return out, true
}

// SubscriberCodec returns the subscriber-side codec that carries a published
// codec unchanged (same MIME type and format parameters), for transceiver
// codec preferences.
func SubscriberCodec(published webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var fallback *webrtc.RTPCodecParameters
	for _, c := range supportedCodecs() {
		if !strings.EqualFold(c.params.MimeType, published.MimeType) {
			continue
		}
		if fmtpEqual(c.params.SDPFmtpLine, published.SDPFmtpLine) {
			return c.params, true
		}
		if fallback == nil {
			p := c.params
			fallback = &p
		}
	}
	if fallback != nil && !strings.EqualFold(published.MimeType, webrtc.MimeTypeH264) {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}

// fmtpEqual compares format parameter lines as unordered key=value sets,
// comparing H.264 profile-level-id by profile only (level may differ).
func fmtpEqual(a, b string) bool {
	pa, pb := parseFmtp(a), parseFmtp(b)
	if pa["packetization-mode"] != pb["packetization-mode"] {
		return false
	}
	if ia, ib := pa["profile-level-id"], pb["profile-level-id"]; ia != "" || ib != "" {
		fa, okA := h264Profile(ia)
		fb, okB := h264Profile(ib)
		return okA && okB && fa == fb
	}
	return pa["profile-id"] == pb["profile-id"]
}

// h264Profile names the profile of an H.264 profile-level-id (RFC 6184
// 8.1): its profile_idc with the constraint flags that matter, so that
// the spellings of one profile compare equal (42c01e from GStreamer's
// x264 and 42e01f from browsers are both Constrained Baseline).
func h264Profile(plid string) (string, bool) {
	v, err := strconv.ParseUint(plid, 16, 32)
	if len(plid) != 6 || err != nil {
		return "", false
	}
	idc, iop := byte(v>>16), byte(v>>8)
	switch {
	case idc == 0x42 && iop&0x40 != 0, idc == 0x4d && iop&0x80 != 0, idc == 0x58 && iop&0xc0 == 0xc0:
		return "constrained-baseline", true
	case idc == 0x42:
		return "baseline", true
	case idc == 0x4d:
		return "main", true
	case idc == 0x58:
		return "extended", true
	case idc == 0x64 && iop&0x0c == 0x0c:
		return "constrained-high", true
	}
	return fmt.Sprintf("idc-%02x", idc), true
}

func parseFmtp(line string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k != "" {
			out[strings.ToLower(k)] = v
		}
	}
	return out
}

// SendDrops is how many packets the node's UDP socket dropped because its
// send buffer was full: a write never waits for room (it would stall the
// track's reader goroutine and every subscriber of the track).
func (t *Transport) SendDrops() uint64 { return t.sendDrops() }

// Close releases the node's sockets.
func (t *Transport) Close() {
	if t.udpMux != nil {
		_ = t.udpMux.Close()
	}
	if t.tcpMux != nil {
		_ = t.tcpMux.Close()
	}
	if t.udpConn != nil {
		_ = t.udpConn.Close()
	}
	if t.tcpListener != nil {
		_ = t.tcpListener.Close()
	}
}

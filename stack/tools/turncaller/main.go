// turncaller joins a LiveKit room as a caller, dispatches a voice agent to it, publishes Opus
// audio, counts the RTP packets the agent sends back and reports the ICE candidate pair each
// peer connection selected, as one JSON line. With --relay-only, ICE may use TURN relays only,
// so the report says which TURN transport (udp, tcp, tls) carried the call.
//
// TLS to the signalling server and to a TURN server is checked against the system roots, or
// the CA bundle that SSL_CERT_FILE names.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/stun/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// An Opus frame (TOC 0xf8: CELT fullband, 20 ms) that decodes to silence.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

const frame = 20 * time.Millisecond

type pairReport struct {
	CandidateType string `json:"candidate_type"`
	RelayProtocol string `json:"relay_protocol"`
	URL           string `json:"url"`
	Local         string `json:"local"`
	Remote        string `json:"remote"`
}

type report struct {
	OK               bool        `json:"ok"`
	JoinedS          float64     `json:"joined_s"`
	AgentJoined      bool        `json:"agent_joined"`
	PacketsFromAgent int64       `json:"packets_from_agent"`
	BytesFromAgent   int64       `json:"bytes_from_agent"`
	Publisher        *pairReport `json:"publisher"`
	Subscriber       *pairReport `json:"subscriber"`
	Error            string      `json:"error"`
}

type options struct {
	url, apiKey, apiSecret, room, identity, agentName string
	timeout, listen                                   time.Duration
	relayOnly                                         bool
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "", "LiveKit URL, e.g. wss://lk.example.com")
	flag.StringVar(&o.apiKey, "api-key", "", "LiveKit API key")
	flag.StringVar(&o.apiSecret, "api-secret", "", "LiveKit API secret")
	flag.StringVar(&o.room, "room", "", "room to join")
	flag.StringVar(&o.identity, "identity", "turncaller", "the caller's identity")
	flag.StringVar(&o.agentName, "agent-name", "", "agent to dispatch by the join token")
	flag.DurationVar(&o.timeout, "timeout", 40*time.Second, "time limit for the whole call")
	flag.DurationVar(&o.listen, "listen", 5*time.Second, "how long to count the agent's packets")
	flag.BoolVar(&o.relayOnly, "relay-only", false, "ICE through TURN relays only")
	flag.Parse()
	rep := run(o)
	line, err := json.Marshal(rep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "turncaller: cannot encode the report:", err)
		os.Exit(2)
	}
	fmt.Println(string(line))
	if !rep.OK {
		os.Exit(1)
	}
}

func run(o options) (rep report) {
	if o.url == "" || o.apiKey == "" || o.apiSecret == "" || o.room == "" || o.agentName == "" {
		rep.Error = "--url, --api-key, --api-secret, --room and --agent-name are required"
		return rep
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	token, err := auth.NewAccessToken(o.apiKey, o.apiSecret).
		SetIdentity(o.identity).
		SetValidFor(o.timeout + time.Minute).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: o.room}).
		SetRoomConfig(&livekit.RoomConfiguration{
			Agents: []*livekit.RoomAgentDispatch{{AgentName: o.agentName}},
		}).
		ToJWT()
	if err != nil {
		rep.Error = "cannot sign the join token: " + err.Error()
		return rep
	}

	var packets, bytes atomic.Int64
	agentAudio := make(chan struct{})
	var once sync.Once
	callback := lksdk.NewRoomCallback()
	callback.OnTrackSubscribed = func(track *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication,
		rp *lksdk.RemoteParticipant) {
		if rp.Kind() != lksdk.ParticipantAgent || track.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		once.Do(func() { close(agentAudio) })
		go func() {
			for { // ends when the room disconnects and the track's reads fail
				pkt, _, err := track.ReadRTP()
				if err != nil {
					return
				}
				packets.Add(1)
				bytes.Add(int64(len(pkt.Payload)))
			}
		}()
	}
	room := lksdk.NewRoom(callback)
	connect := []lksdk.ConnectOption{
		lksdk.WithAutoSubscribe(true),
		lksdk.WithConnectTimeout(o.timeout / 2),
		lksdk.WithDisableRegionDiscovery(),
	}
	if o.relayOnly {
		connect = append(connect, lksdk.WithICETransportPolicy(webrtc.ICETransportPolicyRelay))
	}
	started := time.Now()
	if err := room.JoinWithContextAndToken(ctx, o.url, token, connect...); err != nil {
		rep.Error = fmt.Sprintf("cannot join %s: %v (check the URL, the keys, and that TLS "+
			"trusts the server: SSL_CERT_FILE)", o.url, err)
		if o.relayOnly {
			rep.Error += "; relay only: a TURN server must be reachable, trusted, and allowed " +
				"to relay to the media server's address (LiveKit: turn.allow_restricted_peer_cidrs)"
		}
		return rep
	}
	defer room.Disconnect()
	rep.JoinedS = time.Since(started).Seconds()
	defer func() { rep.Publisher, rep.Subscriber = pairs(room, &rep) }()

	track, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
	})
	if err == nil {
		_, err = room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{
			Name: "caller", Source: livekit.TrackSource_MICROPHONE,
		})
	}
	if err != nil {
		rep.Error = "cannot publish the caller's audio track: " + err.Error()
		return rep
	}
	go func() {
		ticker := time.NewTicker(frame)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				_ = track.WriteSample(media.Sample{Data: opusSilence, Duration: frame}, nil)
			}
		}
	}()

	select {
	case <-agentAudio:
		rep.AgentJoined = true
	case <-ctx.Done():
		rep.AgentJoined = agentPresent(room)
		what := "no agent joined"
		if rep.AgentJoined {
			what = "the agent joined but no audio track of it was subscribed"
		}
		rep.Error = fmt.Sprintf("%s within %s: is an agent named %q registered with this "+
			"LiveKit, and did its media reach us?", what, o.timeout, o.agentName)
		return rep
	}
	select {
	case <-time.After(o.listen):
	case <-ctx.Done():
	}
	rep.PacketsFromAgent, rep.BytesFromAgent = packets.Load(), bytes.Load()
	if rep.PacketsFromAgent == 0 {
		rep.Error = "the agent's audio track was subscribed but no RTP packet arrived"
	}
	return rep
}

func agentPresent(room *lksdk.Room) bool {
	for _, p := range room.GetRemoteParticipants() {
		if p.Kind() == lksdk.ParticipantAgent {
			return true
		}
	}
	return false
}

// pairs reports both peer connections' selected pairs and decides rep.OK: media from the
// agent, received through a relay candidate.
func pairs(room *lksdk.Room, rep *report) (*pairReport, *pairReport) {
	engine, err := engineOf(room)
	if err != nil {
		rep.Error = strings.TrimPrefix(rep.Error+"; "+err.Error(), "; ")
		return nil, nil
	}
	var reports [2]*pairReport
	for i, get := range []func() (*lksdk.PCTransport, bool){engine.Publisher, engine.Subscriber} {
		if transport, ok := get(); ok {
			reports[i] = pairOf(transport.PeerConnection())
		}
	}
	sub := reports[1]
	rep.OK = rep.Error == "" && rep.PacketsFromAgent > 0 && sub != nil && sub.CandidateType == "relay"
	if rep.Error == "" && !rep.OK {
		rep.Error = "media from the agent did not come through a TURN relay"
	}
	return reports[0], reports[1]
}

// engineOf reads the room's RTC engine, which this SDK version keeps in an unexported field
// (its peer connections are reachable from the engine only).
func engineOf(room *lksdk.Room) (*lksdk.RTCEngine, error) {
	field := reflect.ValueOf(room).Elem().FieldByName("engine")
	if !field.IsValid() || field.Type() != reflect.TypeFor[*lksdk.RTCEngine]() {
		return nil, errors.New("this LiveKit SDK version keeps no Room.engine: " +
			"cannot read the peer connections' candidate pairs")
	}
	ptr := reflect.NewAt(field.Type(), unsafe.Pointer(field.UnsafeAddr())).Elem().Interface()
	return ptr.(*lksdk.RTCEngine), nil
}

// pairOf reports the candidate pair ICE selected. Pion's stats give a local relay candidate's
// protocol to the TURN server but not the server's URL: that is the one configured ICE server
// URL with that protocol.
func pairOf(pc *webrtc.PeerConnection) *pairReport {
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return &pairReport{CandidateType: "none (ICE " + pc.ICEConnectionState().String() + ")"}
	}
	rep := &pairReport{
		CandidateType: pair.Local.Typ.String(),
		Local:         fmt.Sprintf("%s %s", pair.Local.Protocol, hostPort(pair.Local)),
		Remote:        fmt.Sprintf("%s %s %s", pair.Remote.Typ, pair.Remote.Protocol, hostPort(pair.Remote)),
	}
	for _, s := range pc.GetStats() {
		c, ok := s.(webrtc.ICECandidateStats)
		if ok && c.Type == webrtc.StatsTypeLocalCandidate && c.IP == pair.Local.Address &&
			c.Port == int32(pair.Local.Port) && c.CandidateType == pair.Local.Typ {
			rep.RelayProtocol, rep.URL = c.RelayProtocol, c.URL
		}
	}
	if rep.URL == "" && rep.RelayProtocol != "" {
		var found []string
		for _, server := range pc.GetConfiguration().ICEServers {
			for _, u := range server.URLs {
				if relayProtocol(u) == rep.RelayProtocol {
					found = append(found, u)
				}
			}
		}
		rep.URL = strings.Join(found, " ")
		if len(found) > 1 {
			rep.URL = "one of: " + rep.URL
		}
	}
	return rep
}

func hostPort(c *webrtc.ICECandidate) string {
	return net.JoinHostPort(c.Address, strconv.Itoa(int(c.Port)))
}

// relayProtocol is the transport to a TURN server that a TURN URL names, as pion reports it.
func relayProtocol(raw string) string {
	uri, err := stun.ParseURI(raw)
	if err != nil {
		return ""
	}
	secure := uri.Scheme == stun.SchemeTypeTURNS
	switch {
	case uri.Scheme != stun.SchemeTypeTURN && !secure:
		return ""
	case uri.Proto == stun.ProtoTypeTCP && secure:
		return "tls"
	case uri.Proto == stun.ProtoTypeTCP:
		return "tcp"
	case secure:
		return "dtls"
	}
	return "udp"
}

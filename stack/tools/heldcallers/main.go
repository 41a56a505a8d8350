// heldcallers holds voice calls with a LiveKit voice agent for a load generator: each call
// joins a room once and keeps asking, turn after turn, until told to end or a bound is reached.
// Many calls share one process. Callers are cheap: the questions arrive once as Opus packets
// (encoded by the driver) and are sent as they are; the agent's reply is found from its RTP
// packets, never decoded: by the audio level each carries (RFC 6464) where the SFU forwards
// it, else by a run of full-size packets 20 ms apart (LiveKit v1.13 forwards no level to this
// subscriber; an agent's silence, with DTX, is a 1-3-byte packet between one comfort-noise
// packet every 400 ms). What the agent said is read from its turn report (the participant
// attribute "lkchaos.turn"); the reply's Opus packets are passed on for the turns the driver
// asks to keep, and for any turn the agent did not report, for it to transcribe.
//
// The driver writes JSON lines on standard input: first
//
//	{"url": "wss://lk.example.com", "questions": [{"text": "...", "packets": ["<base64>", ...]}]}
//
// then commands, {"op": "start", "id": "c1", "token": "<join token>", "options": {...}} and
// {"op": "end", "id": "c1"}. Each call reports JSON lines on standard output, all with its
// "id": events ("joined", "agent_joined", "agent_left", "reconnecting", "reconnected",
// "disconnected"), one "turn" per turn, and "ended", always its last line; a command refused
// is an "error" with the command's "id" and "op". Times are seconds on the monotonic clock
// since the call started. When standard input closes, every call ends and the process exits
// once all have left their rooms.
//
// Each call uses the SDK's default two peer connections (publisher and subscriber) and, between
// questions, sends a silence frame every 400 ms as Opus DTX does. Not the single peer
// connection mode: in server-sdk-go v2.19.0 and v2.20.0 it starts reading signalling before it
// sets the offer sent with the join, so an answer that comes back first is refused ("stable->
// SetRemote(answer)->stable") and the join times out; seen here on a loaded machine, about one
// join in twenty.
// HELDCALLERS_CPUPROFILE=FILE writes a CPU profile of the run (go tool pprof);
// HELDCALLERS_LOG=LEVEL (debug, info, warn: the default) sets the level of the SDK's and pion's
// log, on standard error.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	protoLogger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

const (
	frame = 20 * time.Millisecond
	// A packet at or above this level (-dBov, RFC 6464) is speech: -40 dBov, the level the
	// Python caller's listener calls loud (an RMS of 300 of 32768).
	loudLevel = 40
	// Without the audio level extension, a packet this long or longer is taken for speech
	// (Opus silence and comfort noise are a few bytes).
	loudBytes = 20
	// RTP time of one 20 ms Opus frame (48 kHz).
	samplesPerFrame = 960
	agentState      = "lk.agent.state"
	// Silence that ends a reply once the agent reports its speech has played out.
	finishedSilence = 500 * time.Millisecond
	// How long the agent must have listened, its audio quiet, before the first question to
	// it: an agent that greets enters "listening" as its session starts, then "thinking" and
	// "speaking" for the greeting; asked at once, the greeting plays over the question.
	settle = 300 * time.Millisecond
	// After this long, an agent that publishes no state at all is asked once it is quiet.
	noState       = 3 * time.Second
	turnAttribute = "lkchaos.turn"
	// Between questions, a silence frame this often (Opus DTX's 400 ms), after `hangover`
	// of silence frames at the normal pace once a question ends.
	dtxInterval = 400 * time.Millisecond
	hangover    = 200 * time.Millisecond
)

// An Opus frame (TOC 0xf8: CELT fullband, 20 ms) that decodes to silence.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

type question struct {
	Text    string   `json:"text"`
	Packets [][]byte `json:"packets"`
}

type config struct {
	URL       string     `json:"url"`
	Questions []question `json:"questions"`
}

type options struct {
	DurationS      float64 `json:"duration_s"`
	MaxTurns       int     `json:"max_turns"`
	TurnGapS       float64 `json:"turn_gap_s"`
	FirstReplyS    float64 `json:"first_reply_s"`
	ReplyS         float64 `json:"reply_s"`
	JoinS          float64 `json:"join_s"`
	DispatchS      float64 `json:"dispatch_s"`
	SilenceS       float64 `json:"silence_s"`
	StartDelayS    float64 `json:"start_delay_s"`
	KeepAudioEvery int     `json:"keep_audio_every"`
	// A turn sent with its audio also carries what the agent said unasked after the reply,
	// begun within this many seconds of its end and before the next question was asked.
	ReplyPauseS float64 `json:"reply_pause_s"`
}

type command struct {
	Op      string  `json:"op"`
	ID      string  `json:"id"`
	Token   string  `json:"token"`
	Options options `json:"options"`
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// out writes one JSON line per message, whole, from any goroutine.
type out struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *out) send(v map[string]any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.enc.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "heldcallers: cannot write a report:", err)
	}
}

func main() {
	// Always a zap logger, "warn" unless HELDCALLERS_LOG says otherwise: the SDK's default
	// (logr) makes pion's logger format every debug and trace message it then drops, about a
	// tenth of an idle call's CPU; zap's adapter asks the level first.
	level := os.Getenv("HELDCALLERS_LOG")
	if level == "" {
		level = "warn"
	}
	l, err := protoLogger.NewZapLogger(&protoLogger.Config{Level: level})
	if err != nil {
		fmt.Fprintln(os.Stderr, "heldcallers: HELDCALLERS_LOG:", err)
		os.Exit(2)
	}
	lksdk.SetLogger(l)
	// HELDCALLERS_CPUPROFILE=FILE: a CPU profile of the whole run (go tool pprof FILE).
	if path := os.Getenv("HELDCALLERS_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			code := serve()
			pprof.StopCPUProfile()
			os.Exit(code)
		}
	}
	os.Exit(serve())
}

func serve() int {
	// Ctrl-C reaches the whole process group: the driver ends the calls (it closes standard
	// input), so that each leaves its room rather than vanish from it.
	signal.Ignore(os.Interrupt)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	report := &out{enc: json.NewEncoder(os.Stdout)}
	var cfg config
	if !in.Scan() {
		fmt.Fprintln(os.Stderr, "heldcallers: no configuration line on standard input")
		return 2
	}
	if err := json.Unmarshal(in.Bytes(), &cfg); err != nil || cfg.URL == "" || len(cfg.Questions) == 0 {
		fmt.Fprintln(os.Stderr, "heldcallers: the first line must be {\"url\": ..., \"questions\": "+
			"[{\"text\": ..., \"packets\": [...]}, ...]} with a URL and at least one question")
		return 2
	}
	calls := map[string]*call{}
	var wg sync.WaitGroup
	for in.Scan() {
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			var named struct {
				ID string `json:"id"`
				Op string `json:"op"`
			}
			_ = json.Unmarshal(in.Bytes(), &named)
			report.send(map[string]any{"id": named.ID, "op": named.Op, "event": "error",
				"error": "not a command: " + err.Error()})
			continue
		}
		switch cmd.Op {
		case "start":
			if _, taken := calls[cmd.ID]; taken || cmd.ID == "" || cmd.Token == "" {
				report.send(map[string]any{"id": cmd.ID, "op": cmd.Op, "event": "error",
					"error": "a start needs a new id and a token"})
				continue
			}
			c := newCall(cmd.ID, cfg, cmd.Token, cmd.Options, report)
			calls[cmd.ID] = c
			wg.Add(1)
			go func() { defer wg.Done(); c.run() }()
		case "end":
			if c, ok := calls[cmd.ID]; ok {
				c.stop()
			} else {
				report.send(map[string]any{"id": cmd.ID, "op": cmd.Op, "event": "error",
					"error": "no such call"})
			}
		default:
			report.send(map[string]any{"id": cmd.ID, "op": cmd.Op, "event": "error",
				"error": "unknown op " + strconv.Quote(cmd.Op) + " (start, end)"})
		}
	}
	code := 0
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "heldcallers: cannot read standard input, ending every call:", err)
		code = 1
	}
	for _, c := range calls {
		c.stop()
	}
	wg.Wait()
	return code
}

// listener follows the agent's audio for the turn under way: from the end of the caller's
// speech, when the first and the last speech packet came, and their payloads when kept.
type listener struct {
	mu          sync.Mutex
	after       time.Duration // negative: no turn is listening
	first, last time.Duration
	keep        bool
	lastWasLoud bool
	audio       [][]byte
	// The last speech packet heard at all, armed or not (negative: none yet).
	lastLoud time.Duration
	// wake is signalled when the armed turn hears its first speech.
	wake chan<- struct{}
}

func newListener(wake chan<- struct{}) *listener {
	return &listener{after: -1, lastLoud: -1, wake: wake}
}

// quietSince: no speech packet has come since `at`.
func (l *listener) quietSince(at time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastLoud < at
}

// notify wakes whoever waits on the call's changes, without blocking (one pending is enough).
func notify(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// arm starts listening for a reply to speech that ended at `after`.
func (l *listener) arm(after time.Duration, keep bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.after, l.first, l.last, l.keep, l.audio = after, -1, -1, keep, nil
}

func (l *listener) disarm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.after, l.audio = -1, nil
}

// startRun marks a packet already added as quiet as the first of a run of speech.
func (l *listener) startRun(at time.Duration, payload []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastLoud = max(l.lastLoud, at)
	if l.after < 0 || at < l.after {
		return
	}
	if l.first < 0 {
		l.first = at
		notify(l.wake)
		if l.keep {
			l.audio = append(l.audio, payload)
		}
	}
	l.last = max(l.last, at)
	l.lastWasLoud = true
}

// inSpeech: the turn under way has heard speech, and the last packet was speech.
func (l *listener) inSpeech() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.after >= 0 && l.first >= 0 && l.lastWasLoud
}

func (l *listener) add(at time.Duration, loud bool, payload []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if loud {
		l.lastLoud = max(l.lastLoud, at)
	}
	if l.after < 0 || at < l.after {
		return
	}
	l.lastWasLoud = loud
	if loud {
		if l.first < 0 {
			l.first = at
			notify(l.wake)
		}
		l.last = at
	}
	if l.keep && l.first >= 0 {
		l.audio = append(l.audio, payload)
	}
}

// reply waits for the first speech packet within `first` of the end of speech, then for
// `silence` without speech (or `whole` since the first), or `finishedSilence` once
// `finished` says the agent's speech has played out: the reply's start and end. A silence
// while `busy` says the agent is still at work on the reply (thinking: a tool call after
// "let me check") does not end it. It sleeps
// until the earliest moment one of those can hold, woken early by `wake` (the first speech
// packet, a change of the agent's attributes), not on a fixed poll: a reply's packets come
// every 20 ms and are only counted, never waited on one by one.
func (l *listener) reply(now func() time.Duration, first, whole, silence time.Duration,
	finished, busy func() bool, wake <-chan struct{}, stopped <-chan struct{}) (start, end time.Duration, audio [][]byte, ok bool) {
	// Go 1.23's timers: Reset needs no drain, and a stopped timer's channel holds nothing.
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		l.mu.Lock()
		after, start, end, audio := l.after, l.first, l.last, l.audio
		l.mu.Unlock()
		t := now()
		done := finished()
		working := !done && busy()
		var next time.Duration // when to look again, from now
		switch {
		case start < 0 && t-after >= first:
			return -1, -1, nil, false
		case start < 0:
			next = after + first - t
		case (t-end >= silence && !working) || t-start >= whole || (done && t-end >= finishedSilence):
			return start, end + frame, audio, true
		default:
			next = start + whole - t
			if !working {
				next = min(next, end+silence-t)
			}
			if done {
				next = min(next, end+finishedSilence-t)
			}
		}
		timer.Reset(max(next, frame))
		select {
		case <-stopped:
			return -1, -1, nil, false
		case <-wake:
		case <-timer.C:
		}
	}
}

// finishedSpeaking is true once the agent has been seen speaking since it was made and
// is listening again (its lk.agent.state): its reply has played out. Only "listening" ends
// it (an agent that calls a tool mid-reply is "thinking"), and never for an agent that
// reports no state. "Seen speaking" is counted where the attribute changes (c.speakings), so
// a short reply is not missed between two looks.
func (c *call) finishedSpeaking(agent *lksdk.RemoteParticipant) func() bool {
	before := c.speakingCount()
	return func() bool {
		return c.speakingCount() > before && agent.Attributes()[agentState] == "listening"
	}
}

// atWork is true while the agent says it is at work on a reply (its lk.agent.state is
// "thinking" or "speaking"); never for an agent that reports no state.
func atWork(agent *lksdk.RemoteParticipant) func() bool {
	return func() bool {
		state := agent.Attributes()[agentState]
		return state == "thinking" || state == "speaking"
	}
}

// readyToAsk waits until the agent may be asked: it listens and its audio is quiet, both for
// `hold` on end (before the first question to an agent: a greeting it begins meanwhile
// plays out first), or, for an agent that reports no state, its audio quiet after
// `noState`; at most `limit`. False when told to end.
// watchSpeakers starts collecting the agents seen speaking (see call.spoke).
func (c *call) watchSpeakers() {
	c.mu.Lock()
	c.spoke = map[string]bool{}
	c.mu.Unlock()
}

// speakers stops collecting and returns the agents seen speaking, sorted.
func (c *call) speakers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make([]string, 0, len(c.spoke))
	for identity := range c.spoke {
		seen = append(seen, identity)
	}
	c.spoke = nil
	sort.Strings(seen)
	return seen
}

func (c *call) readyToAsk(agent *lksdk.RemoteParticipant, l *listener, limit, hold time.Duration) bool {
	return readyToAsk(c.now, func() (string, bool) {
		state, reported := agent.Attributes()[agentState]
		return state, reported
	}, l, limit, hold, c.await)
}

// readyToAsk is call.readyToAsk on any clock and state: `await(deadline)` waits until a
// change, the deadline or the call's end (false then).
func readyToAsk(now func() time.Duration, agentState func() (string, bool), l *listener,
	limit, hold time.Duration, await func(time.Duration) bool) bool {
	began := now()
	calmSince := time.Duration(-1)
	for {
		t := now()
		if t-began >= limit {
			return true // asked anyway: its reply says what is wrong
		}
		state, reported := agentState()
		settled := state == "listening" || (!reported && t-began >= noState)
		if settled && l.quietSince(t-hold) {
			if calmSince < 0 {
				calmSince = t
			}
			if t-calmSince >= hold {
				return true
			}
		} else {
			calmSince = -1
		}
		next := began + limit
		if calmSince >= 0 {
			next = min(next, calmSince+hold)
		} else {
			next = min(next, t+50*time.Millisecond) // audio quiets without an event
		}
		if !await(next) {
			return false
		}
	}
}

func (c *call) speakingCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.speakings
}

type call struct {
	id     string
	cfg    config
	token  string
	opt    options
	report *out
	t0     time.Time
	done   chan struct{}
	once   sync.Once

	utterances chan utterance
	// changes is signalled when what the turn loop waits on may have changed: the agent's
	// attributes (its state, its turn report), its audio track, its first reply packet.
	changes chan struct{}

	mu     sync.Mutex
	agent  *lksdk.RemoteParticipant
	listen *listener
	turns  int
	lost   bool
	// How many times the agent's state became "speaking".
	speakings int
	// The agents (identities) whose state became "speaking" since the turn began asking:
	// more than one answered the caller (a duplicate dispatch).
	spoke map[string]bool
	// The call has ended: nothing more is reported of it.
	finished bool
	// The agent last asked (its sid): a new one may greet first. Used by the turn loop only.
	askedAgent string
	// A turn sent with its audio, held back until the next question's first asking ended:
	// what the agent says meanwhile, unasked, may be the rest of its reply (an agent that
	// says "let me check" and reports "listening" while its tool runs). Its reply's end, and
	// the listener recording since then. Used by the turn loop only.
	pending         map[string]any
	pendingEnd      time.Duration
	pendingListener *listener
}

func newCall(id string, cfg config, token string, opt options, report *out) *call {
	return &call{id: id, cfg: cfg, token: token, opt: opt, report: report, t0: time.Now(),
		done: make(chan struct{}), utterances: make(chan utterance), changes: make(chan struct{}, 1)}
}

func (c *call) now() time.Duration { return time.Since(c.t0) }

func (c *call) stop() { c.once.Do(func() { close(c.done) }) }

func (c *call) stopped() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *call) event(kind string, fields map[string]any) {
	c.mu.Lock()
	finished := c.finished
	c.mu.Unlock()
	if finished {
		return
	}
	msg := map[string]any{"id": c.id, "event": kind, "t": c.now().Seconds()}
	for k, v := range fields {
		msg[k] = v
	}
	c.report.send(msg)
}

// await waits until something changed (c.changes), the call's clock reaches `deadline`, or
// the call is told to end; false when told.
func (c *call) await(deadline time.Duration) bool {
	timer := time.NewTimer(max(deadline-c.now(), 0))
	defer timer.Stop()
	select {
	case <-c.done:
		return false
	case <-c.changes:
		return true
	case <-timer.C:
		return true
	}
}

// pause waits d or until the call is told to end; false when told.
func (c *call) pause(d time.Duration) bool {
	select {
	case <-c.done:
		return false
	case <-time.After(d):
		return true
	}
}

func (c *call) run() {
	reason := ""
	defer func() {
		c.flushPending(nil, -1) // a turn held back is sent as it is
		c.stop()                // the sender too, however the call ended
		c.mu.Lock()
		c.finished = true // the room's late callbacks (its own disconnect) are not reported
		c.mu.Unlock()
		c.report.send(map[string]any{"id": c.id, "event": "ended", "t": c.now().Seconds(),
			"reason": reason})
	}()
	if !c.pause(seconds(c.opt.StartDelayS)) {
		reason = "stopped before joining"
		return
	}
	room, track, err := c.join()
	if err != nil {
		reason = err.Error()
		return
	}
	defer room.Disconnect()
	c.event("joined", nil)
	go c.send(track)
	for {
		switch {
		case c.stopped():
			reason = "stopped"
		case c.turns >= c.opt.MaxTurns:
			reason = fmt.Sprintf("%d turns", c.opt.MaxTurns)
		case c.now() >= seconds(c.opt.DurationS):
			reason = fmt.Sprintf("%g s", c.opt.DurationS)
		case c.isLost():
			reason = "the room was lost (disconnected, not resumed)"
		}
		if reason != "" {
			return
		}
		agent, l := c.waitAgent(seconds(c.opt.DispatchS))
		if agent == nil {
			if !c.stopped() {
				c.failed(c.now(), "no_agent", fmt.Sprintf("no agent with audio in the room within %g s",
					c.opt.DispatchS))
			}
			continue
		}
		c.turn(agent, l)
		c.pause(seconds(c.opt.TurnGapS))
	}
}

func (c *call) join() (*lksdk.Room, *lksdk.LocalTrack, error) {
	cb := lksdk.NewRoomCallback()
	cb.OnParticipantConnected = func(p *lksdk.RemoteParticipant) {
		if p.Kind() == lksdk.ParticipantAgent {
			c.event("agent_joined", map[string]any{"identity": p.Identity()})
		}
	}
	cb.OnParticipantDisconnected = func(p *lksdk.RemoteParticipant) {
		if p.Kind() != lksdk.ParticipantAgent {
			return
		}
		c.event("agent_left", map[string]any{"identity": p.Identity()})
		c.mu.Lock()
		if c.agent == p {
			c.agent, c.listen = nil, nil
		}
		c.mu.Unlock()
		notify(c.changes)
	}
	cb.OnAttributesChanged = func(changed map[string]string, p lksdk.Participant) {
		if r, ok := p.(*lksdk.RemoteParticipant); ok && r.Kind() == lksdk.ParticipantAgent {
			if changed[agentState] == "speaking" {
				c.mu.Lock()
				c.speakings++
				if c.spoke != nil {
					c.spoke[r.Identity()] = true
				}
				c.mu.Unlock()
			}
			notify(c.changes)
		}
	}
	cb.OnReconnecting = func() { c.event("reconnecting", nil) }
	cb.OnReconnected = func() { c.event("reconnected", nil) }
	cb.OnDisconnectedWithReason = func(why lksdk.DisconnectionReason) {
		c.mu.Lock()
		c.lost = true
		c.mu.Unlock()
		c.event("disconnected", map[string]any{"reason": string(why)})
	}
	cb.OnTrackSubscribed = func(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication,
		p *lksdk.RemoteParticipant) {
		if p.Kind() != lksdk.ParticipantAgent || track.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		l := newListener(c.changes)
		c.mu.Lock()
		c.agent, c.listen = p, l
		c.mu.Unlock()
		notify(c.changes)
		go c.read(track, pub, l)
	}
	room := lksdk.NewRoom(cb)
	ctx, cancel := context.WithTimeout(context.Background(), seconds(c.opt.JoinS))
	defer cancel()
	go func() { // told to end while joining: give up the join
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := room.JoinWithContextAndToken(ctx, c.cfg.URL, c.token,
		lksdk.WithAutoSubscribe(true),
		lksdk.WithConnectTimeout(seconds(c.opt.JoinS)),
		lksdk.WithDisableRegionDiscovery())
	if err != nil {
		return nil, nil, fmt.Errorf("could not join %s: %v", c.cfg.URL, err)
	}
	track, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
	})
	if err == nil {
		_, err = room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{
			Name: "caller", Source: livekit.TrackSource_MICROPHONE,
		})
	}
	if err != nil {
		room.Disconnect()
		return nil, nil, errors.New("could not publish the caller's audio track: " + err.Error())
	}
	return room, track, nil
}

func (c *call) isLost() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// read records the agent's audio packets until the track ends. A packet is speech when its
// level (RFC 6464, where the extension was negotiated) is -40 dBov or louder; without the
// extension, when it and the packet before it are both `loudBytes` or longer and 20 ms apart
// in RTP time: with DTX, silence is a long comfort-noise packet every 400 ms between 1-byte
// ones, never two in a row.
func (c *call) read(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, l *listener) {
	levelID := 0
	if receiver := pub.Receiver(); receiver != nil {
		for _, ext := range receiver.GetParameters().HeaderExtensions {
			if ext.URI == sdp.AudioLevelURI {
				levelID = ext.ID
			}
		}
	}
	var prev *rtp.Packet
	var prevAt time.Duration
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		at := c.now()
		if level, ok := audioLevel(pkt, levelID); ok {
			l.add(at, level <= loudLevel, pkt.Payload)
		} else {
			long := len(pkt.Payload) >= loudBytes
			run := long && prev != nil && len(prev.Payload) >= loudBytes &&
				pkt.Timestamp-prev.Timestamp == samplesPerFrame
			if run && !l.inSpeech() {
				l.startRun(prevAt, prev.Payload)
			}
			l.add(at, run, pkt.Payload)
		}
		prev, prevAt = pkt, at
	}
}

func audioLevel(pkt *rtp.Packet, levelID int) (uint8, bool) {
	if levelID == 0 {
		return 0, false
	}
	raw := pkt.GetExtension(uint8(levelID))
	var level rtp.AudioLevelExtension
	if len(raw) == 0 || level.Unmarshal(raw) != nil {
		return 0, false
	}
	return level.Level, true
}

// utterance is a question handed to the sender, and where it says when it was spoken.
type utterance struct {
	packets [][]byte
	spoken  chan time.Duration
}

// send paces the caller's audio as a WebRTC client with Opus DTX does: a question's packets
// 20 ms apart, then `hangover` of silence frames, then one silence frame every `dtxInterval`
// until the next question. RTP timestamps follow the clock, in whole frames, and sequence
// numbers run on: the gaps read as DTX to the receiver, not as loss.
func (c *call) send(track *lksdk.LocalTrack) {
	start, slot := time.Now(), int64(-1)
	write := func(p []byte, contiguous bool) {
		next := slot + 1
		if !contiguous {
			next = max(next, int64(time.Since(start)/frame))
		}
		slot = next
		_ = track.WriteSample(media.Sample{Data: p, Duration: frame,
			Timestamp: start.Add(time.Duration(slot) * frame)}, nil)
	}
	for {
		select {
		case <-c.done:
			return
		case <-time.After(dtxInterval):
			write(opusSilence, false)
		case u := <-c.utterances:
			ticker := time.NewTicker(frame)
			for i, p := range u.packets {
				if i > 0 {
					select {
					case <-c.done:
						ticker.Stop()
						return
					case <-ticker.C:
					}
				}
				write(p, i > 0)
			}
			u.spoken <- c.now() + frame
			for range hangover / frame {
				select {
				case <-c.done:
					ticker.Stop()
					return
				case <-ticker.C:
				}
				write(opusSilence, true)
			}
			ticker.Stop()
		}
	}
}

// say asks a question and returns when its last packet has been sent (the end of speech).
func (c *call) say(q question) (time.Duration, bool) {
	u := utterance{packets: q.Packets, spoken: make(chan time.Duration, 1)}
	select {
	case c.utterances <- u:
	case <-c.done:
		return 0, false
	}
	select {
	case at := <-u.spoken:
		return at, true
	case <-c.done:
		return 0, false
	}
}

func (c *call) waitAgent(limit time.Duration) (*lksdk.RemoteParticipant, *listener) {
	deadline := c.now() + limit
	for {
		c.mu.Lock()
		agent, l := c.agent, c.listen
		c.mu.Unlock()
		if agent != nil && l != nil {
			return agent, l
		}
		if c.now() >= deadline || !c.await(deadline) {
			return nil, nil
		}
	}
}

func turnReport(p *lksdk.RemoteParticipant) map[string]any {
	raw := p.Attributes()[turnAttribute]
	report := map[string]any{}
	if raw != "" {
		_ = json.Unmarshal([]byte(raw), &report)
	}
	return report
}

func reportTurn(report map[string]any) float64 {
	n, _ := report["turn"].(float64)
	return n
}

// flushPending sends the turn held back (see call.pending), with the agent's speech since its
// reply (`after`, its first and last packet's times) when that speech began within
// ReplyPauseS of the reply's end and by `asked`, the end of the next question's first
// asking (negative: none was asked, so nothing is taken).
func (c *call) flushPending(l *listener, asked time.Duration) {
	msg, from := c.pending, c.pendingListener
	if msg == nil {
		return
	}
	c.pending, c.pendingListener = nil, nil
	from.mu.Lock()
	first, last, audio := from.first, from.last, from.audio
	from.mu.Unlock()
	if l == from && asked >= 0 && first >= 0 && first <= asked &&
		first-c.pendingEnd <= seconds(c.opt.ReplyPauseS) && len(audio) > 0 {
		msg["after"] = audio
		msg["after_first"] = first.Seconds()
		msg["after_last"] = (last + frame).Seconds()
	}
	c.event("turn", msg)
}

func (c *call) failed(started time.Duration, stage, reason string) {
	c.flushPending(nil, -1)
	c.turns++
	c.event("turn", map[string]any{"started": started.Seconds(), "stage": stage, "reason": reason})
}

func (c *call) turn(agent *lksdk.RemoteParticipant, l *listener) {
	started := c.now()
	// Ask only once the agent listens again (it may still be finishing its last reply), its
	// audio quiet; before the first question to this agent, listening a moment on end.
	hold := time.Duration(0)
	if c.askedAgent != agent.SID() {
		hold = settle
	}
	if !c.readyToAsk(agent, l, seconds(c.opt.FirstReplyS), hold) {
		return // told to end: a turn held back is sent as the call ends
	}
	c.askedAgent = agent.SID()
	q := c.cfg.Questions[rand.IntN(len(c.cfg.Questions))]
	previous := reportTurn(turnReport(agent))
	keep := c.opt.KeepAudioEvery > 0 && c.turns%c.opt.KeepAudioEvery == 0
	c.watchSpeakers()
	endOfSpeech, ok := c.say(q)
	if !ok {
		return
	}
	askedTwice := false
	if atWork(agent)() {
		// The agent talked over the question: no agent is at work on a reply to a question
		// it has not heard end. A greeting it began after it seemed settled is no turn: ask
		// once more when it listens again (asked anyway after the limit). A turn it reported
		// meanwhile says it answered a part of the question: judged, not asked past. What it
		// said may be the rest of the last reply: that turn goes with it once it has ended.
		asked := endOfSpeech
		if !c.readyToAsk(agent, l, seconds(c.opt.FirstReplyS), settle) {
			return
		}
		c.flushPending(l, asked)
		if report := turnReport(agent); reportTurn(report) > previous {
			c.speakers() // stop collecting: the turn ends here
			c.turns++
			c.event("turn", map[string]any{"started": started.Seconds(), "question": q.Text,
				"cut_short": true, "report": report})
			return
		}
		askedTwice = true
		if endOfSpeech, ok = c.say(q); !ok {
			return
		}
	} else {
		c.flushPending(l, endOfSpeech)
	}
	l.arm(endOfSpeech, true) // sent back when kept, or when the agent does not report
	start, end, audio, heard := l.reply(c.now, seconds(c.opt.FirstReplyS),
		seconds(c.opt.ReplyS), seconds(c.opt.SilenceS), c.finishedSpeaking(agent), atWork(agent),
		c.changes, c.done)
	if heard && c.opt.ReplyPauseS > 0 {
		l.arm(end, true) // what the agent says after its reply, in case this turn holds back
	} else {
		l.disarm()
	}
	agents := c.speakers()
	if c.stopped() {
		return
	}
	if !heard {
		c.turns++
		c.event("turn", map[string]any{"started": started.Seconds(), "question": q.Text,
			"stage": "no_reply", "reason": fmt.Sprintf("no reply audio within %g s", c.opt.FirstReplyS)})
		return
	}
	report := turnReport(agent)
	for deadline := c.now() + 2*time.Second; reportTurn(report) <= previous && c.now() < deadline; {
		if !c.await(deadline) {
			return // told to end: the turn is not judged
		}
		report = turnReport(agent)
	}
	if reportTurn(report) <= previous {
		report = map[string]any{}
	}
	c.turns++
	msg := map[string]any{
		"started": started.Seconds(), "question": q.Text, "end_of_speech": endOfSpeech.Seconds(),
		"first_reply": start.Seconds(), "last_reply": end.Seconds(), "report": report,
		"agents": agents, "asked_twice": askedTwice,
	}
	if keep || len(report) == 0 { // nothing else to check the reply by
		msg["audio"] = audio
		if c.opt.ReplyPauseS > 0 { // judged by its audio: it may go on (see call.pending)
			msg["t"] = c.now().Seconds() // the turn ended now, whenever it is sent
			c.pending, c.pendingEnd, c.pendingListener = msg, end, l
			return
		}
	}
	l.disarm()
	c.event("turn", msg)
}

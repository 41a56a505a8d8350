package main

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// A clock for the listener, and packets fed to it at that clock's times by another goroutine,
// as the track's reader does.
type replyCase struct {
	t0      time.Time
	l       *listener
	wake    chan struct{}
	stopped chan struct{}
}

func newReplyCase() *replyCase {
	wake := make(chan struct{}, 1)
	return &replyCase{t0: time.Now(), l: newListener(wake), wake: wake, stopped: make(chan struct{})}
}

func (r *replyCase) now() time.Duration { return time.Since(r.t0) }

// never: an agent that does not say it is at work on a reply.
func never() bool { return false }

// speak feeds `loud` speech packets 20 ms apart after `delay`, then quiet ones until `quiet`
// has passed; it returns the times of the first and the last speech packet.
func (r *replyCase) speak(delay time.Duration, loud int, quiet time.Duration) (first, last chan time.Duration) {
	first, last = make(chan time.Duration, 1), make(chan time.Duration, 1)
	go func() {
		time.Sleep(delay)
		for i := range loud {
			at := r.now()
			if i == 0 {
				first <- at
			}
			r.l.add(at, true, []byte{byte(i)})
			if i == loud-1 {
				last <- at
			}
			time.Sleep(frame)
		}
		for end := r.now() + quiet; r.now() < end; time.Sleep(frame) {
			r.l.add(r.now(), false, []byte{0})
		}
	}()
	return first, last
}

func TestAReplyIsItsSpeechUntilSilence(t *testing.T) {
	r := newReplyCase()
	r.l.arm(0, true)
	first, last := r.speak(50*time.Millisecond, 10, time.Second)
	start, end, audio, ok := r.l.reply(r.now, 5*time.Second, 10*time.Second, 300*time.Millisecond,
		func() bool { return false }, never, r.wake, r.stopped)
	returned := r.now()
	if !ok {
		t.Fatal("no reply heard")
	}
	firstAt, lastAt := <-first, <-last
	if start != firstAt || end != lastAt+frame {
		t.Fatalf("reply %v-%v, want %v-%v", start, end, firstAt, lastAt+frame)
	}
	if returned < lastAt+300*time.Millisecond {
		t.Fatalf("ended %v after its last speech, before the 300 ms of silence", returned-lastAt)
	}
	if len(audio) < 10 {
		t.Fatalf("kept %d packets, want the 10 of the speech and the quiet ones after", len(audio))
	}
}

func TestTheFirstSpeechWakesTheWaitNotTheFirstReplyBound(t *testing.T) {
	// Without the wake the wait would sleep to its 5 s bound before looking again.
	r := newReplyCase()
	r.l.arm(0, false)
	r.speak(50*time.Millisecond, 5, time.Second)
	_, _, _, ok := r.l.reply(r.now, 5*time.Second, 10*time.Second, 200*time.Millisecond,
		func() bool { return false }, never, r.wake, r.stopped)
	if !ok {
		t.Fatal("no reply heard")
	}
	if r.now() >= 5*time.Second {
		t.Fatalf("the reply was seen only at the first-reply bound (%v)", r.now())
	}
}

func TestNoSpeechWithinTheBoundIsNoReply(t *testing.T) {
	r := newReplyCase()
	r.l.arm(0, true)
	start, end, audio, ok := r.l.reply(r.now, 200*time.Millisecond, time.Second, time.Second,
		func() bool { return false }, never, r.wake, r.stopped)
	if ok || start != -1 || end != -1 || audio != nil {
		t.Fatalf("heard %v-%v (%d packets) in silence", start, end, len(audio))
	}
	if r.now() < 200*time.Millisecond {
		t.Fatalf("gave up after %v, before the 200 ms bound", r.now())
	}
}

func TestTheAgentDoneSpeakingEndsTheReplyBeforeTheSilenceBound(t *testing.T) {
	// The silence bound is 4 s; once the agent says it has finished (its state, which wakes
	// the wait as the attribute's callback does), 500 ms of quiet end it.
	r := newReplyCase()
	r.l.arm(0, false)
	_, last := r.speak(20*time.Millisecond, 5, 5*time.Second)
	done := make(chan struct{})
	go func() {
		<-last
		time.Sleep(100 * time.Millisecond)
		close(done)
		notify(r.wake)
	}()
	finished := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	_, end, _, ok := r.l.reply(r.now, 5*time.Second, 10*time.Second, 4*time.Second, finished,
		never, r.wake, r.stopped)
	if !ok {
		t.Fatal("no reply heard")
	}
	if got := r.now() - end; got < finishedSilence-frame || got >= 2*time.Second {
		t.Fatalf("ended %v after the reply, want the %v that follow the agent's end", got,
			finishedSilence)
	}
}

func TestAPauseWhileTheAgentIsAtWorkDoesNotEndTheReply(t *testing.T) {
	// "Let me check" (5 packets), then 700 ms of silence while the agent calls a tool
	// (thinking), then the answer: the 300 ms silence bound does not end the reply there.
	r := newReplyCase()
	r.l.arm(0, false)
	working := make(chan struct{})
	answerLast := make(chan chan time.Duration, 1)
	go func() {
		_, fillerLast := r.speak(20*time.Millisecond, 5, 0)
		<-fillerLast
		for end := r.now() + 700*time.Millisecond; r.now() < end; time.Sleep(frame) {
			r.l.add(r.now(), false, []byte{0})
		}
		answerFirst, last := r.speak(0, 5, 0)
		answerLast <- last
		<-answerFirst
		close(working)
	}()
	busy := func() bool {
		select {
		case <-working:
			return false
		default:
			return true
		}
	}
	_, end, _, ok := r.l.reply(r.now, 5*time.Second, 10*time.Second, 300*time.Millisecond,
		func() bool { return false }, busy, r.wake, r.stopped)
	if !ok {
		t.Fatal("no reply heard")
	}
	if last := <-<-answerLast; end != last+frame {
		t.Fatalf("the reply ended at %v, want the end of the answer after the pause (%v)", end,
			last+frame)
	}
}

func TestAReplyIsCutAtItsWholeBound(t *testing.T) {
	r := newReplyCase()
	r.l.arm(0, false)
	first, _ := r.speak(0, 100, 0) // 2 s of speech
	start, _, _, ok := r.l.reply(r.now, time.Second, 500*time.Millisecond, time.Second,
		func() bool { return false }, never, r.wake, r.stopped)
	if !ok {
		t.Fatal("no reply heard")
	}
	if got := r.now() - <-first; got < 500*time.Millisecond || got >= 2*time.Second || start < 0 {
		t.Fatalf("ended %v after the reply began, want its 500 ms bound", got)
	}
}

func TestAStoppedCallStopsWaiting(t *testing.T) {
	r := newReplyCase()
	r.l.arm(0, false)
	go func() { time.Sleep(50 * time.Millisecond); close(r.stopped) }()
	_, _, _, ok := r.l.reply(r.now, 5*time.Second, 10*time.Second, time.Second,
		func() bool { return false }, never, r.wake, r.stopped)
	if ok || r.now() >= 5*time.Second {
		t.Fatalf("ok=%v after %v: a stopped call must give up at once", ok, r.now())
	}
}

func TestSpeechBeforeTheEndOfTheQuestionIsNotTheReply(t *testing.T) {
	r := newReplyCase()
	r.l.arm(time.Hour, true) // listening for a reply to speech that ends in an hour
	r.l.add(r.now(), true, []byte{1})
	if r.l.inSpeech() || len(r.l.audio) != 0 {
		t.Fatal("a packet before the end of the question was taken for the reply")
	}
	select {
	case <-r.wake:
		t.Fatal("a packet before the end of the question woke the wait")
	default:
	}
}

func TestAGreetingPlaysOutBeforeTheFirstQuestion(t *testing.T) {
	// The agent listens as its session starts, then thinks (100 ms) and greets (speech from
	// 300 ms to 700 ms), then listens again: the first question waits for the greeting.
	r := newReplyCase()
	var mu sync.Mutex
	state := "listening"
	set := func(s string) { mu.Lock(); state = s; mu.Unlock() }
	go func() {
		time.Sleep(100 * time.Millisecond)
		set("thinking")
		time.Sleep(200 * time.Millisecond)
		set("speaking")
		_, last := r.speak(0, 20, 0)
		<-last
		set("listening")
	}()
	agentState := func() (string, bool) { mu.Lock(); defer mu.Unlock(); return state, true }
	await := func(deadline time.Duration) bool {
		time.Sleep(min(max(deadline-r.now(), 0), 20*time.Millisecond))
		return true
	}
	if !readyToAsk(r.now, agentState, r.l, 5*time.Second, settle, await) {
		t.Fatal("told to end")
	}
	if got := r.now(); got < 700*time.Millisecond+settle {
		t.Fatalf("asked at %v, during the greeting (it ends about 700 ms in)", got)
	}
}

func TestAnAgentThatReportsNoStateIsAskedOnceQuiet(t *testing.T) {
	r := newReplyCase()
	await := func(deadline time.Duration) bool {
		time.Sleep(min(max(deadline-r.now(), 0), 20*time.Millisecond))
		return true
	}
	none := func() (string, bool) { return "", false }
	if !readyToAsk(r.now, none, r.l, 10*time.Second, 0, await) {
		t.Fatal("told to end")
	}
	if got := r.now(); got < noState || got > noState+time.Second {
		t.Fatalf("asked at %v, want soon after %v", got, noState)
	}
}

// heldBack is a call holding back a turn whose reply ended at 1 s, its listener recording
// since then and hearing speech from `from` to `to` (fake clock times); it returns the
// call, the listener and where the call's messages go.
func heldBack(t *testing.T, from, to time.Duration) (*call, *listener, *bytes.Buffer) {
	t.Helper()
	var sent bytes.Buffer
	c := newCall("c1", config{}, "", options{ReplyPauseS: 8}, &out{enc: json.NewEncoder(&sent)})
	l := newListener(make(chan struct{}, 1))
	l.arm(time.Second, true)
	for at := from; at <= to; at += frame {
		l.add(at, true, []byte{1})
	}
	c.pending = map[string]any{"question": "What is two plus three?", "audio": [][]byte{{9}}}
	c.pendingEnd, c.pendingListener = time.Second, l
	return c, l, &sent
}

func sentTurn(t *testing.T, sent *bytes.Buffer) map[string]any {
	t.Helper()
	var msg map[string]any
	if err := json.Unmarshal(sent.Bytes(), &msg); err != nil || msg["event"] != "turn" {
		t.Fatalf("no turn sent: %q (%v)", sent.String(), err)
	}
	return msg
}

func TestWhatTheAgentSaysUnaskedBeforeTheNextQuestionEndedGoesWithTheHeldTurn(t *testing.T) {
	c, l, sent := heldBack(t, 2500*time.Millisecond, 3*time.Second)
	c.flushPending(l, 4*time.Second) // the next question ended at 4 s
	msg := sentTurn(t, sent)
	after, _ := msg["after"].([]any)
	if len(after) == 0 || msg["after_first"] != 2.5 || msg["after_last"] != 3.02 {
		t.Fatalf("the speech after the reply is not with the turn: %v", msg)
	}
	if c.pending != nil {
		t.Fatal("the turn is still held back")
	}
}

func TestSpeechAfterTheNextQuestionEndedIsNotTheHeldTurns(t *testing.T) {
	for name, tc := range map[string]struct {
		from, asked time.Duration
		same        bool
	}{
		"begun after the next question ended": {5 * time.Second, 4 * time.Second, true},
		"begun past the pause":                {9500 * time.Millisecond, 12 * time.Second, true},
		"another agent's listener":            {2 * time.Second, 4 * time.Second, false},
		"no question asked":                   {2 * time.Second, -1, true},
	} {
		t.Run(name, func(t *testing.T) {
			c, l, sent := heldBack(t, tc.from, tc.from+500*time.Millisecond)
			if !tc.same {
				l = newListener(make(chan struct{}, 1))
			}
			c.flushPending(l, tc.asked)
			if msg := sentTurn(t, sent); msg["after"] != nil {
				t.Fatalf("took speech that is not the turn's: %v", msg)
			}
		})
	}
}

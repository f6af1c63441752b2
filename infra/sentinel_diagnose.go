package infra

// What the Sentinels think, for an error that says they did not do what
// was expected (no promotion, roles not settled): Sentinel decides alone,
// and without its view and its log such an error explains nothing.

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"time"
)

// sentinelLogEvents is how many of a Sentinel's latest log lines a
// diagnosis quotes (its events: +sdown, +odown, +try-failover, votes,
// -failover-abort-*, +tilt, "Next failover delay", ...).
const sentinelLogEvents = 40

// diagnoseTimeout bounds the whole diagnosis (it runs after ctx may have
// ended).
const diagnoseTimeout = 3 * time.Second

// diagnose describes each Sentinel's view of the set and its latest log
// events, every address named after its node ("sentinel-1: tilt 0; master
// redis-2 flags s_down,o_down,master ..."). It asks with a fresh deadline:
// the caller's ctx has usually ended.
func (t *sentinelTopology) diagnose(ctx context.Context, e *Env) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), diagnoseTimeout)
	defer cancel()
	name := e.announceNamer()
	var b strings.Builder
	b.WriteString("what the Sentinels think:")
	for _, s := range e.ByKind(Sentinel) {
		sn := s.(*node)
		fmt.Fprintf(&b, "\n  %s: %s", sn.name, name(sentinelView(ctx, sn)))
		b.WriteString("\n    log:")
		for _, l := range sentinelEvents(sn.srv.logLines(5*sentinelLogEvents), sentinelLogEvents) {
			b.WriteString("\n      " + name(logPrefixRe.ReplaceAllString(l, "")))
		}
	}
	return b.String()
}

// sentinelView is one Sentinel's state for the master set: its TILT mode,
// the master's address, flags and failover state, and each replica's
// flags, link, priority and INFO age, as it sees them.
func sentinelView(ctx context.Context, n *node) string {
	info, err := directInfo(ctx, n, "sentinel")
	if err != nil {
		return err.Error()
	}
	tilt := "tilt " + info["sentinel_tilt"]
	if info["sentinel_tilt"] != "0" {
		tilt += fmt.Sprintf(" (since %s s)", info["sentinel_tilt_since_seconds"])
	}
	parts := []string{tilt}
	c := directClient(n)
	defer c.Close()
	m, err := c.Do(ctx, "SENTINEL", "MASTER", SentinelMaster).Result()
	if err != nil {
		return strings.Join(append(parts, fmt.Sprintf("SENTINEL MASTER: %v", err)), "; ")
	}
	f := Pairs(m)
	master := fmt.Sprintf("master %s flags %s config-epoch %s last-ok-ping-reply %s ms", net.JoinHostPort(f["ip"], f["port"]), f["flags"], f["config-epoch"], f["last-ok-ping-reply"])
	if st, ok := f["failover-state"]; ok {
		master += " failover-state " + st
	}
	parts = append(parts, master)
	rs, err := c.Do(ctx, "SENTINEL", "REPLICAS", SentinelMaster).Slice()
	if err != nil {
		return strings.Join(append(parts, fmt.Sprintf("SENTINEL REPLICAS: %v", err)), "; ")
	}
	var reps []string
	for _, r := range rs {
		f := Pairs(r)
		reps = append(reps, fmt.Sprintf("%s flags %s master-link %s (down %s ms) priority %s info-refresh %s ms offset %s",
			net.JoinHostPort(f["ip"], f["port"]), f["flags"], f["master-link-status"], f["master-link-down-time"],
			f["slave-priority"], f["info-refresh"], f["slave-repl-offset"]))
	}
	sort.Strings(reps)
	return strings.Join(parts, "; ") + "; replicas: " + strings.Join(reps, ", ")
}

// sentinelEvents keeps the last n lines of a Sentinel's log that say
// something: not the "new configuration saved on disk" after each event.
func sentinelEvents(log string, n int) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if l == "" || strings.Contains(l, "configuration saved on disk") {
			continue
		}
		out = append(out, l)
	}
	return out[max(0, len(out)-n):]
}

// logPrefixRe matches what a Redis log line starts with before its time
// of day: "8408:X 03 Dec 2026 ".
var logPrefixRe = regexp.MustCompile(`^\d+:[XCMS] \d{1,2} \w{3} \d{4} `)

// hostPortRe matches an IPv4 address and port as Redis writes them: in
// logs "127.0.0.1 40569" or "127.0.0.1:40569".
var hostPortRe = regexp.MustCompile(`\b(\d{1,3}(?:\.\d{1,3}){3})[: ](\d{1,5})\b`)

// announceNamer returns a function that replaces, in a text, every node's
// announced address (in either of Redis's spellings) with its name.
func (e *Env) announceNamer() func(string) string {
	names := map[string]string{}
	for _, n := range e.Nodes() {
		if nn := n.(*node); nn.announce != "" {
			names[nn.announce] = nn.name
		}
	}
	return func(s string) string {
		return hostPortRe.ReplaceAllStringFunc(s, func(m string) string {
			sub := hostPortRe.FindStringSubmatch(m)
			if name, ok := names[net.JoinHostPort(sub[1], sub[2])]; ok {
				return name
			}
			return m
		})
	}
}

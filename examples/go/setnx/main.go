// Command setnx is a Go adapter of faultline's process protocol
// (docs/protocol.md): it serves one of faultline's own lock
// implementations (redis-setnx unless init names another, as in
// exec:PATH:redis-seed-literal) over stdin/stdout, so that comparing it with
// the same implementation run in-process isolates the protocol's cost.
//
//	go build -o bin/setnx ./examples/go/setnx
//	faultline run --impl redis-setnx,exec:bin/setnx --workload counter
//
// A test hook that simulates a crash (lock.ErrSimulatedCrash) becomes a real
// one here: the process exits at once.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/faultline-dev/faultline/impl/lock"
)

// request is every field a lock request can carry.
type request struct {
	ID         uint64            `json:"id"`
	Op         string            `json:"op"`
	DeadlineMS int64             `json:"deadline_ms"`
	Process    int               `json:"process"`
	Name       string            `json:"name"`
	Describe   bool              `json:"describe"`
	Endpoints  lockEndpoints     `json:"endpoints"`
	Options    map[string]string `json:"options"`
	Key        string            `json:"key"`
	Token      string            `json:"token"`
	Fence      uint64            `json:"fence"`
	TTLMS      int64             `json:"ttl_ms"`
	NowMS      float64           `json:"now_ms"`
}

type lockEndpoints struct {
	Redis []struct {
		Name, Addr, Password string
	} `json:"redis"`
	Postgres []struct {
		Name, DSN string
	} `json:"postgres"`
}

type server struct {
	l    lock.Locker
	skew time.Duration // faultline's clock hint minus ours
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	s := &server{}
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, "setnx adapter: bad request:", err)
			os.Exit(2)
		}
		reply := s.handle(req)
		reply["id"] = req.ID
		b, _ := json.Marshal(reply)
		out.Write(append(b, '\n'))
		out.Flush()
	}
	if s.l != nil {
		s.l.Close()
	}
}

func (s *server) handle(req request) map[string]any {
	if req.NowMS > 0 {
		s.skew = time.Until(time.UnixMicro(int64(req.NowMS * 1000)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(req.DeadlineMS)*time.Millisecond)
	defer cancel()
	ttl := time.Duration(req.TTLMS) * time.Millisecond
	lease := lock.Lease{Key: req.Key, Token: req.Token, Fence: req.Fence}
	var err error
	reply := map[string]any{"outcome": "ok"}
	switch req.Op {
	case "init":
		return s.init(ctx, req)
	case "acquire", "try_acquire":
		get := s.l.Acquire
		if req.Op == "try_acquire" {
			get = s.l.TryAcquire
		}
		start := time.Now().Add(s.skew)
		if lease, err = get(ctx, req.Key, ttl); err == nil {
			reply["token"], reply["fence"] = lease.Token, lease.Fence
			reply["waited_ms"] = max(lease.Expiry.Sub(start)-ttl, 0).Seconds() * 1000
		}
	case "release":
		err = s.l.Release(ctx, lease)
	case "refresh":
		_, err = s.l.Refresh(ctx, lease, ttl)
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	switch {
	case err == nil:
	case errors.Is(err, lock.ErrSimulatedCrash):
		os.Exit(137) // the hook's simulated crash, for real
	case errors.Is(err, lock.ErrNotAcquired):
		reply["outcome"], reply["message"] = "not-acquired", err.Error()
	case errors.Is(err, lock.ErrNotHeld):
		reply["outcome"], reply["message"] = "not-held", err.Error()
	default:
		reply["outcome"], reply["message"] = "indeterminate", err.Error()
	}
	return reply
}

// init declares the wrapped implementation and, unless describing, opens
// its client on the endpoints.
func (s *server) init(ctx context.Context, req request) map[string]any {
	name := req.Name
	if name == "" {
		name = "redis-setnx"
	}
	info, err := lock.Lookup(name)
	if err != nil {
		return map[string]any{"outcome": "indeterminate", "message": err.Error()}
	}
	reply := map[string]any{"outcome": "ok", "protocol": 1, "kind": "lock", "name": info.Name,
		"doc": "Go adapter over the protocol: " + info.Doc, "redis_nodes": info.RedisNodes,
		"postgres_nodes": info.PostgresNodes, "fencing": info.Fencing, "mutant": info.Mutant}
	if req.Describe {
		return reply
	}
	var ep lock.Endpoints
	for _, r := range req.Endpoints.Redis {
		ep.Redis = append(ep.Redis, lock.RedisEndpoint{Name: r.Name, Addr: r.Addr, Password: r.Password})
	}
	for _, p := range req.Endpoints.Postgres {
		ep.Postgres = append(ep.Postgres, lock.PostgresEndpoint{Name: p.Name, DSN: p.DSN})
	}
	opt := lock.Options{Params: req.Options, Process: req.Process,
		Reentrant: req.Options["reentrant"] == "true", Watchdog: req.Options["watchdog"] == "true",
		Now: func() time.Time { return time.Now().Add(s.skew) }}
	if s.l, err = info.New(ctx, ep, opt); err != nil {
		return map[string]any{"outcome": "indeterminate", "message": err.Error()}
	}
	return reply
}

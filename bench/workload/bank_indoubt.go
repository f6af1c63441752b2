package workload

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/faultline-dev/faultline/impl/txn"
)

// inDoubtMonitor polls pg_prepared_xacts on every participant (directly,
// never through a fault) to measure how long each prepared transaction
// stays in doubt: from its PREPARE (the server's own timestamp) until it
// is first seen gone. A transaction still prepared when the final Recover
// starts, or prepared longer than a bound no live coordinator reaches, is
// in doubt.
type inDoubtMonitor struct {
	// endpoints resolves the participants' direct DSNs now (a restarted
	// node may have a new address; pg-standby's A follows the primary).
	endpoints func() (txn.Endpoints, error)
	nodes     int
	prefix    string // the run's prepared-transaction gid prefix
	interval  time.Duration

	mu    sync.Mutex
	conns []*pgx.Conn
	seen  map[string]*prepSeen // node/gid

	stop, done chan struct{}
	stopOnce   sync.Once
	started    bool
}

type prepSeen struct {
	node     int
	gid      string
	prepared time.Time // local estimate: poll time − age
	gone     time.Time // first poll that did not see it (zero: still there)
	open     bool      // still prepared when the final Recover started
	by       string
}

func (d prepSeen) duration() time.Duration {
	if d.gone.IsZero() {
		return time.Since(d.prepared)
	}
	return d.gone.Sub(d.prepared)
}

func newInDoubtMonitor(endpoints func() (txn.Endpoints, error), ep txn.Endpoints, interval time.Duration) *inDoubtMonitor {
	nodes := len(ep.Participants)
	return &inDoubtMonitor{endpoints: endpoints, nodes: nodes, prefix: ep.PreparedPrefix(), interval: interval, conns: make([]*pgx.Conn, nodes),
		seen: map[string]*prepSeen{}, stop: make(chan struct{}), done: make(chan struct{})}
}

func (m *inDoubtMonitor) start() {
	m.started = true
	go func() {
		defer close(m.done)
		tick := time.NewTicker(m.interval)
		defer tick.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), max(m.interval, 500*time.Millisecond))
			m.poll(ctx)
			cancel()
		}
	}()
}

func (m *inDoubtMonitor) stopLoop() {
	m.stopOnce.Do(func() { close(m.stop) })
	if m.started {
		<-m.done
	}
}

// poll reads every node's prepared transactions once.
func (m *inDoubtMonitor) poll(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for node := range m.nodes {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rows, err := m.query(qctx, node)
		cancel()
		if err != nil {
			continue // node down: nothing known
		}
		present := map[string]bool{}
		for _, r := range rows {
			k := strconv.Itoa(node) + "/" + r.gid
			present[k] = true
			if _, ok := m.seen[k]; !ok {
				m.seen[k] = &prepSeen{node: node, gid: r.gid, prepared: now.Add(-time.Duration(r.age * float64(time.Millisecond)))}
			}
		}
		for k, s := range m.seen {
			if s.node == node && !present[k] && s.gone.IsZero() {
				s.gone = now
				s.by = "live"
				if s.open {
					s.by = "recover"
				}
			}
		}
	}
}

type prepRow struct {
	gid string
	age float64 // ms
}

func (m *inDoubtMonitor) query(ctx context.Context, node int) ([]prepRow, error) {
	c := m.conns[node]
	if c == nil || c.IsClosed() {
		ep, err := m.endpoints()
		if err != nil {
			return nil, err
		}
		if node >= len(ep.Participants) {
			return nil, errors.New("no such participant")
		}
		cfg, err := pgx.ParseConfig(ep.Participants[node].DSN)
		if err != nil {
			return nil, err
		}
		cfg.ConnectTimeout = time.Second
		if c, err = pgx.ConnectConfig(ctx, cfg); err != nil {
			return nil, err
		}
		m.conns[node] = c
	}
	rows, _ := c.Query(ctx, `SELECT gid, extract(epoch FROM now() - prepared)::float8 * 1000 FROM pg_prepared_xacts
		WHERE database = current_database() AND left(gid, length($1)) = $1`, m.prefix)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (prepRow, error) {
		var x prepRow
		return x, r.Scan(&x.gid, &x.age)
	})
	if err != nil {
		c.Close(context.Background())
		m.conns[node] = nil
	}
	return out, err
}

// markOpen marks every transaction still prepared: the final Recover
// resolves it.
func (m *inDoubtMonitor) markOpen() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.seen {
		if s.gone.IsZero() {
			s.open = true
		}
	}
}

// inDoubt returns the transactions that were in doubt: open at the final
// Recover, or prepared at least bound; by prepare time.
func (m *inDoubtMonitor) inDoubt(bound time.Duration) []prepSeen {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []prepSeen
	for _, s := range m.seen {
		if s.open || s.duration() >= bound {
			d := *s
			if d.gone.IsZero() {
				d.by = "never"
			}
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].prepared.Before(out[j].prepared) })
	return out
}

func (m *inDoubtMonitor) close() {
	m.stopLoop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, c := range m.conns {
		if c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.Close(ctx)
			cancel()
			m.conns[i] = nil
		}
	}
}

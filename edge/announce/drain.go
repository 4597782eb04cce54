package announce

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/fswatch"
)

// Drain sources, as they appear in Draining and the status.
const (
	drainAPI    = "api"
	drainFile   = "file"
	drainConsul = "consul"
)

// pollDrainFile drains while the drain file exists. Anything at the path
// counts, a symlink included even when its target is gone (Lstat): an
// operator who put something there meant to drain, and a dangling link
// must not send traffic back.
func (s *Speaker) pollDrainFile() {
	if s.cfg.DrainFile == "" {
		return
	}
	_, err := os.Lstat(s.cfg.DrainFile)
	switch {
	case err == nil:
		s.setDrain(drainFile, true)
	case errors.Is(err, os.ErrNotExist):
		s.setDrain(drainFile, false)
	default:
		// Unreadable: keep the last state, say why.
		s.log.Warn("bgp: drain file unreadable; keeping the drain state", "path", s.cfg.DrainFile, "err", err)
	}
}

// drainFileLoop watches the drain file's folder so a drain takes effect at
// once; the health loop polls it as well.
func (s *Speaker) drainFileLoop(ctx context.Context) {
	if s.cfg.DrainFile == "" {
		return
	}
	s.pollDrainFile()
	dir, name := filepath.Split(s.cfg.DrainFile)
	if dir == "" {
		dir = "."
	}
	for ctx.Err() == nil {
		err := fswatch.Watch(ctx, dir, 20*time.Millisecond, func(changed string) {
			if changed == name {
				s.pollDrainFile()
			}
		})
		if ctx.Err() != nil {
			return
		}
		// The folder may not exist yet: the health loop's poll covers
		// that; try the watch again later.
		s.log.Debug("bgp: drain file folder not watched; polling", "dir", dir, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}

// drainKey is the Consul key whose presence drains the node.
func (s *Speaker) drainKey() string { return s.kvPrefix + "/edges/" + s.cfg.Node + "/drain" }

// statusKey is the Consul key the speaker writes its status to.
func (s *Speaker) statusKey() string { return s.kvPrefix + "/edges/" + s.cfg.Node + "/bgp" }

// drainConsulLoop follows the drain key with blocking queries. When Consul
// cannot be reached the last known state holds.
func (s *Speaker) drainConsulLoop(ctx context.Context) {
	if s.consul == nil {
		return
	}
	kv := s.consul.KV()
	var index uint64
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		q := (&consulapi.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute}).WithContext(ctx)
		pair, meta, err := kv.Get(s.drainKey(), q)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.m.errors.WithLabelValues("consul_drain").Inc()
			s.log.Warn("bgp: consul drain key; keeping the drain state", "key", s.drainKey(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		s.setDrain(drainConsul, pair != nil)
		if meta.LastIndex < index {
			index = 0 // the index went backwards (snapshot restore): start over
		} else {
			index = meta.LastIndex
		}
	}
}

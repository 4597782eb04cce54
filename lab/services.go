package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Where the ops namespace's services listen, as the other namespaces reach
// them.
var (
	opsAddr4   = linkPeer4(linkOps)
	opsAddr6   = linkPeer6(linkOps)
	ConsulHTTP = opsAddr4 + ":8500"
	RedisPort  = 6379
)

// startRedis starts the Redis master in the ops namespace and one replica
// in each edge namespace: each edge reads its local replica (DESIGN.md).
func (l *Lab) startRedis() error {
	common := []string{"--save", "", "--appendonly", "no", "--protected-mode", "no", "--port", fmt.Sprint(RedisPort)}
	dir := filepath.Join(l.Dir, "redis-master")
	os.MkdirAll(dir, 0o755)
	if _, err := l.start("redis-master", nsOps, "redis-server", append(common, "--bind", "0.0.0.0 ::", "--dir", dir)...); err != nil {
		return err
	}
	if err := waitFor(10*time.Second, "redis master answers", func() error {
		_, err := inNS(nsOps, "redis-cli", "-p", fmt.Sprint(RedisPort), "ping")
		return err
	}); err != nil {
		return err
	}
	for i := 1; i <= Edges; i++ {
		dir := filepath.Join(l.Dir, fmt.Sprintf("redis-e%d", i))
		os.MkdirAll(dir, 0o755)
		args := append(common, "--bind", "127.0.0.1 ::1", "--dir", dir, "--replicaof", opsAddr6, fmt.Sprint(RedisPort))
		if _, err := l.start(fmt.Sprintf("redis-e%d", i), nsEdge(i), "redis-server", args...); err != nil {
			return err
		}
	}
	return waitFor(15*time.Second, "redis replicas in sync", func() error {
		for i := 1; i <= Edges; i++ {
			out, err := inNS(nsEdge(i), "redis-cli", "-p", fmt.Sprint(RedisPort), "info", "replication")
			if err != nil {
				return err
			}
			if !strings.Contains(out, "master_link_status:up") {
				return fmt.Errorf("edge %d replica not linked", i)
			}
		}
		return nil
	})
}

// RedisMaster runs a redis-cli command against the master.
func (l *Lab) RedisMaster(args ...string) (string, error) {
	return inNS(nsOps, "redis-cli", append([]string{"-p", fmt.Sprint(RedisPort)}, args...)...)
}

// startConsul starts a Consul dev agent in the ops namespace.
func (l *Lab) startConsul() error {
	consul, err := findConsul()
	if err != nil {
		return err
	}
	dir := filepath.Join(l.Dir, "consul")
	os.MkdirAll(dir, 0o755)
	if _, err := l.start("consul", nsOps, consul, "agent", "-dev", "-node", "lab-ops",
		"-bind", opsAddr4, "-client", opsAddr4+" 127.0.0.1", "-data-dir", dir); err != nil {
		return err
	}
	return waitFor(20*time.Second, "consul has a leader", func() error {
		out, err := inNS(nsOps, "curl", "-sf", "http://"+ConsulHTTP+"/v1/status/leader")
		if err != nil || len(out) < 5 {
			return fmt.Errorf("no leader yet: %q %v", out, err)
		}
		return nil
	})
}

func findConsul() (string, error) {
	for _, p := range []string{os.Getenv("V6POD_CONSUL"), "/usr/local/bin/consul", filepath.Join(os.Getenv("HOME"), ".cache/v6pod/bin/consul")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("lab: consul not found; run scripts/deps.sh")
}

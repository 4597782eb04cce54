package testsvc

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// EnvConsul names a variable that points at the consul binary to use.
const EnvConsul = "V6POD_CONSUL"

// Consul is a `consul agent -dev` started by StartConsul for one test.
type Consul struct {
	t    testing.TB
	bin  string
	dir  string
	node string

	http, serfLAN, server int

	mu     sync.Mutex
	proc   *proc
	client *api.Client
}

// findConsul looks in $V6POD_CONSUL, then PATH, then the deps.sh cache.
func findConsul(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvConsul); p != "" {
		if isExecutable(p) {
			return p
		}
		t.Fatalf("testsvc: %s=%s is not an executable file", EnvConsul, p)
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "v6pod", "bin", "consul")
		if isExecutable(p) {
			return p
		}
	}
	missing(t, "testsvc: consul not found ($"+EnvConsul+", PATH, ~/.cache/v6pod/bin/consul); install with scripts/deps.sh")
	return ""
}

// StartConsul runs a Consul dev agent (server and leader of its own
// datacenter) bound to 127.0.0.1 on free ports — HTTP, Serf LAN and server
// RPC; DNS, gRPC, HTTPS and Serf WAN are off — with its own data dir and a
// unique node name. It waits until the agent has a leader and the KV store
// answers, and stops it when the test ends.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	c := &Consul{t: t, bin: findConsul(t), dir: t.TempDir()}
	c.node = "testsvc-" + randHex(6)
	t.Cleanup(c.Stop)
	var err error
	for range startAttempts {
		if err = c.pickPorts(); err != nil {
			break
		}
		if err = c.start(); err == nil {
			break
		}
		if !isAddrInUse(err) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = c.HTTPAddr()
	cfg.Scheme = "http"
	cfg.Token = ""
	cfg.TokenFile = ""
	cfg.Namespace = ""
	cfg.Partition = ""
	cfg.Datacenter = ""
	cfg.TLSConfig = api.TLSConfig{}
	c.client, err = api.NewClient(cfg)
	if err != nil {
		t.Fatalf("testsvc: consul client: %v", err)
	}
	return c
}

func (c *Consul) pickPorts() error {
	var err error
	if c.http, err = freePort("127.0.0.1"); err != nil {
		return err
	}
	if c.server, err = freePort("127.0.0.1"); err != nil {
		return err
	}
	if c.serfLAN, err = freeUDPTCPPort("127.0.0.1"); err != nil {
		return err
	}
	if c.http == c.server || c.http == c.serfLAN || c.server == c.serfLAN {
		return fmt.Errorf("testsvc: consul ports collide: %w", errAddrInUse)
	}
	return nil
}

func (c *Consul) config() string {
	return fmt.Sprintf(`ports {
  http     = %d
  https    = -1
  dns      = -1
  grpc     = -1
  grpc_tls = -1
  serf_lan = %d
  serf_wan = -1
  server   = %d
}
disable_update_check = true
ui_config { enabled = false }
`, c.http, c.serfLAN, c.server)
}

func (c *Consul) start() error {
	cfgPath := filepath.Join(c.dir, "testsvc.hcl")
	if err := os.WriteFile(cfgPath, []byte(c.config()), 0o644); err != nil {
		return fmt.Errorf("testsvc: consul config: %w", err)
	}
	argv := []string{c.bin, "agent", "-dev",
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-advertise", "127.0.0.1",
		"-node", c.node, "-node-id", uuid(),
		"-data-dir", filepath.Join(c.dir, "data"),
		"-config-file", cfgPath,
		"-log-level", "info",
	}
	// Keep a developer's CONSUL_* settings away from the agent.
	p, err := startProc("consul agent on "+c.HTTPAddr(), filepath.Join(c.dir, "consul.log"),
		[]string{"CONSUL_HTTP_ADDR=", "CONSUL_HTTP_TOKEN=", "CONSUL_HTTP_SSL=false"}, argv...)
	if err != nil {
		return err
	}
	if err := p.waitReady(60*time.Second, c.ready); err != nil {
		p.stop(time.Second)
		return err
	}
	c.mu.Lock()
	c.proc = p
	c.mu.Unlock()
	return nil
}

// ready is true when the agent reports a leader and a KV read answers
// (404 for the probe key is an answer).
func (c *Consul) ready() error {
	hc := &http.Client{Timeout: 2 * time.Second}
	base := "http://" + c.HTTPAddr()
	resp, err := hc.Get(base + "/v1/status/leader")
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if l := strings.Trim(strings.TrimSpace(string(b)), `"`); resp.StatusCode != 200 || l == "" {
		return fmt.Errorf("no leader yet (%d %s)", resp.StatusCode, b)
	}
	resp, err = hc.Get(base + "/v1/kv/testsvc-ready-probe")
	if err != nil {
		return err
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 404 {
		return fmt.Errorf("KV read answered %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// HTTPAddr is host:port of the HTTP API.
func (c *Consul) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.http)) }

// URL is the store URL consul://127.0.0.1:port/prefix (prefix without
// leading slash, e.g. "v6pod").
func (c *Consul) URL(prefix string) string {
	return "consul://" + c.HTTPAddr() + "/" + strings.TrimPrefix(prefix, "/")
}

// Client is an API client for the agent.
func (c *Consul) Client() *api.Client { return c.client }

// NodeName is the agent's node name, unique per start.
func (c *Consul) NodeName() string { return c.node }

// LogTail returns the last n lines of the agent log.
func (c *Consul) LogTail(n int) string { return tailFile(filepath.Join(c.dir, "consul.log"), n) }

// Stop stops the agent and waits for it to exit. Stopping twice is harmless.
func (c *Consul) Stop() {
	c.mu.Lock()
	p := c.proc
	c.proc = nil
	c.mu.Unlock()
	if p != nil {
		p.stop(5 * time.Second)
	}
}

// Restart stops the agent and starts it again on the same ports. A dev
// agent keeps its state in memory, so KV data and registrations are gone
// afterwards (like a Consul outage with data loss); clients see the same
// address. Call it from the test goroutine.
func (c *Consul) Restart() {
	c.t.Helper()
	c.Stop()
	var err error
	for i := 0; i < 50; i++ {
		if err = c.start(); err == nil || !isAddrInUse(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("testsvc: restart consul: %v", err)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

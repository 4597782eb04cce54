package source

import (
	"strings"
	"testing"
	"time"
)

func TestOpenNamesSourcesWithoutSecrets(t *testing.T) {
	for _, tc := range []struct{ url, kind, name string }{
		{"file:///etc/v6pod/pods.yaml", "*source.File", "file:///etc/v6pod/pods.yaml"},
		{"/etc/v6pod/pods.yaml", "*source.File", "file:///etc/v6pod/pods.yaml"},
		{"redis://:hunter2@127.0.0.1:6379/0", "*source.Redis", "redis://:xxxxx@127.0.0.1:6379/0"},
		{"rediss://edge:hunter2@redis.test:6380/1", "*source.Redis", "rediss://edge:xxxxx@redis.test:6380/1"},
		{"consul://127.0.0.1:8500/v6pod", "*source.Consul", "consul://127.0.0.1:8500/v6pod"},
		{"consul://127.0.0.1:8500", "*source.Consul", "consul://127.0.0.1:8500/v6pod"},
	} {
		s, err := Open(tc.url, Options{})
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if got := typeName(s); got != tc.kind || s.String() != tc.name {
			t.Errorf("%s: %s %q, want %s %q", tc.url, got, s.String(), tc.kind, tc.name)
		}
	}
	for _, bad := range []string{"gopher://x", "file://host/x.yaml", "redis://:hunter2@[::1", "redis://:hunter2@h:1/db", "redis://:hunter2@h:port/0"} {
		_, err := Open(bad, Options{})
		if err == nil {
			t.Errorf("%s: no error", bad)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", bad, err)
		}
	}
}

func typeName(s Source) string {
	switch s.(type) {
	case *File:
		return "*source.File"
	case *Redis:
		return "*source.Redis"
	case *Consul:
		return "*source.Consul"
	}
	return "?"
}

func TestStaleness(t *testing.T) {
	var s Stats
	now := time.Unix(1000, 0)
	if s.Staleness(now) != 0 {
		t.Fatal("never synced: 0")
	}
	s.MarkSync(now)
	s.Up.Store(true)
	if s.Staleness(now.Add(time.Minute)) != 0 {
		t.Fatal("up: 0")
	}
	s.Up.Store(false)
	if d := s.Staleness(now.Add(time.Minute)); d != time.Minute {
		t.Fatalf("down for a minute: %v", d)
	}
}

func TestReplicaProblem(t *testing.T) {
	for _, tc := range []struct{ info, want string }{
		{"# Replication\r\nrole:master\r\nconnected_slaves:1\r\n", ""},
		{"# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\n", ""},
		{"# Replication\r\nrole:slave\r\nmaster_link_status:down\r\nmaster_sync_in_progress:0\r\n", "replica: master_link_status down"},
		{"# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nmaster_sync_in_progress:1\r\n", "replica: master_sync_in_progress"},
		{"# Replication\r\nrole:slave\r\n", "replica: master_link_status "},
	} {
		if got := replicaProblem(tc.info); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.info, got, tc.want)
		}
	}
}

package model

import (
	"net/netip"
	"os"
	"strings"
	"testing"
)

// The example of DESIGN.md's "file store" section parses as written.
func TestParseDesignExample(t *testing.T) {
	b, err := os.ReadFile("testdata/pods.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseYAML("pods.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 7 || len(d.Pools) != 1 || len(d.Routes) != 1 {
		t.Fatalf("got %+v", d)
	}
	p := d.Pool("edge-ams-01")
	if got := p.Eligible(false); len(got) != 1 || got[0] != netip.MustParseAddr("203.0.113.1") {
		t.Errorf("eligible v4 = %v, want only 203.0.113.1 (the other is drained)", got)
	}
	if got := p.Eligible(true); len(got) != 2 {
		t.Errorf("eligible v6 = %v", got)
	}
	if d.Route("ROUTE.v6pod.test") == nil {
		t.Error("route lookup is not case-insensitive")
	}
	if d.Hosts["*.blog.test"] != "blog" || len(d.Apps["shop"]) != 2 {
		t.Errorf("hosts/apps: %v %v", d.Hosts, d.Apps)
	}
	// A round trip through the writer's encoding gives the same document.
	out, err := MarshalYAML(d)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := ParseYAML("round trip", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out2, _ := MarshalYAML(d2)
	if string(out) != string(out2) {
		t.Errorf("round trip differs:\n%s\n---\n%s", out, out2)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "version: 1\npoolz: []\n", `line 2: unknown key "poolz"`},
		{"unknown pool key", "pools:\n  - name: a\n    edge: e\n    wieght: 3\n", `line 4: unknown key "wieght"`},
		{"bad address", "pools:\n  - name: a\n    edge: e\n    v4:\n      - 192.0.2.1\n      - 192.0.2.300\n", `line 6: address "192.0.2.300"`},
		{"v6 in v4", "pools:\n  - name: a\n    edge: e\n    v4: [\"2001:db8::1\"]\n", "pool a: v4: 2001:db8::1 is not an IPv4 address"},
		{"address in two pools", "pools:\n  - {name: a, edge: e, v4: [192.0.2.1]}\n  - {name: b, edge: f, v4: [192.0.2.1]}\n", "pool b: v4: 192.0.2.1 is already in pool a"},
		{"drain of a stranger", "pools:\n  - {name: a, edge: e, v4: [192.0.2.1], drain: [192.0.2.9]}\n", "drain: 192.0.2.9 is not an address of the pool"},
		{"bad state", "pools:\n  - {name: a, edge: e, state: paused}\n", `state "paused"`},
		{"route to a missing pool", "routes:\n  - {name: r.test., pools: [nope]}\n", `route r.test.: pool "nope" does not exist`},
		{"shard size below answers", "pools:\n  - {name: a, edge: e}\nroutes:\n  - {name: r.test., pools: [a], answers: 9, shard: label, shard_size: 4}\n", "shard_size 4: must be at least answers (9)"},
		{"bad shard", "pools:\n  - {name: a, edge: e}\nroutes:\n  - {name: r.test., pools: [a], shard: host}\n", `shard "host"`},
		{"bad upstream", "apps:\n  shop: [\"[::1\"]\n", `address "[::1": unclosed`},
		{"bad host", "hosts:\n  \"www.*.test\": shop\n", "only a leading"},
		{"bad pool name", "pools:\n  - {name: Edge/1, edge: e}\n", "not allowed"},
		{"route name with a space", "pools:\n  - {name: a, edge: e}\nroutes:\n  - {name: 'bad name!.test', pools: [a]}\n", `label "bad name!": character ' '`},
		{"route name with a star", "pools:\n  - {name: a, edge: e}\nroutes:\n  - {name: 'b*.test', pools: [a]}\n", `label "b*": character '*'`},
		{"route label too long", "pools:\n  - {name: a, edge: e}\nroutes:\n  - {name: " + strings.Repeat("x", 64) + ".test, pools: [a]}\n", "longer than 63"},
		{"route name too long", "pools:\n  - {name: a, edge: e}\nroutes:\n  - {name: " + strings.Repeat("abcdefghi.", 26) + "test, pools: [a]}\n", "longer than 253"},
		{"route with a pool twice", "pools:\n  - {name: a, edge: e}\nroutes:\n  - {name: r.test., pools: [a, a]}\n", "route r.test.: pool a listed twice"},
		{"wrong type", "pools: 3\n", "line 1: cannot unmarshal !!int `3`"},
		{"two documents", "version: 1\n---\nversion: 2\n", "more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseYAML("f.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "f.yaml: ") {
				t.Errorf("error %q does not name the input", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	d, err := ParseYAML("f", []byte("pools:\n  - {name: a, edge: e}\nroutes:\n  - {name: R.Test, pools: [a], shard: label}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, r := d.Pools[0], d.Routes[0]
	if p.Weight != DefaultWeight || p.State != Active {
		t.Errorf("pool defaults: %+v", p)
	}
	if r.Name != "r.test." || r.Answers != DefaultAnswers || r.TTL != DefaultTTL || r.ShardSize != DefaultShardSize {
		t.Errorf("route defaults: %+v", r)
	}
}

func TestCloneIsDeep(t *testing.T) {
	b, _ := os.ReadFile("testdata/pods.yaml")
	d, err := ParseYAML("pods.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	c := d.Clone()
	c.Pools[0].V4[0] = netip.MustParseAddr("198.51.100.1")
	c.Routes[0].Pools[0] = "x"
	c.Hosts["new.test"] = "x"
	c.Apps["shop"][0] = netip.AddrPort{}
	if d.Pools[0].V4[0] == c.Pools[0].V4[0] || d.Routes[0].Pools[0] == "x" || d.Hosts["new.test"] != "" || !d.Apps["shop"][0].IsValid() {
		t.Error("Clone shares memory with the original")
	}
}

// The pod `make run` starts is valid as shipped.
func TestExamplePodParses(t *testing.T) {
	b, err := os.ReadFile("../../examples/pods.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseYAML("examples/pods.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Pools) == 0 || len(d.Routes) == 0 || len(d.Apps) == 0 {
		t.Errorf("example pod is missing pools, routes or apps: %+v", d)
	}
}

func TestCheckDomainAccepts(t *testing.T) {
	for _, s := range []string{"r.test.", "_dmarc.x-1.test.", "a.", "xn--bcher-kva.test.", strings.Repeat("a", 63) + ".test."} {
		if err := CheckDomain(s); err != nil {
			t.Errorf("CheckDomain(%q): %v", s, err)
		}
	}
	for _, s := range []string{"-a.test.", "a-.test.", "a..test.", "A.test."} {
		if err := CheckDomain(s); err == nil {
			t.Errorf("CheckDomain(%q) accepted", s)
		}
	}
}

func TestEqualIgnoresVersion(t *testing.T) {
	a := &Document{Version: 1, Pools: []Pool{{Name: "a", Edge: "e"}}}
	b := a.Clone()
	b.Version = 9
	if same, err := Equal(a, b); !same || err != nil {
		t.Errorf("Equal = %v, %v", same, err)
	}
	b.Pools[0].Weight = 3
	if same, _ := Equal(a, b); same {
		t.Error("Equal missed a change")
	}
}

// YAML errors name keys, not Go types.
func TestParseErrorsHideGoTypes(t *testing.T) {
	for _, y := range []string{"version: 1\nbogus: 2\n", "pools: 3\n", "pools:\n  - {name: a, edge: e, weight: heavy}\n"} {
		_, err := ParseYAML("f.yaml", []byte(y))
		if err == nil || strings.Contains(err.Error(), "model.") || strings.Contains(err.Error(), "uint32") {
			t.Errorf("%q: %v", y, err)
		}
	}
}

// Whatever ParseYAML accepts is valid, and survives the writer's encoding
// unchanged; errors never mention Go types.
func FuzzParseYAML(f *testing.F) {
	b, _ := os.ReadFile("testdata/pods.yaml")
	f.Add(string(b))
	f.Add("pools:\n  - {name: a, edge: e, rotation: {out: [192.0.2.1], in: [], wait: 5m}}\n")
	f.Add("routes:\n  - {name: 'b*.test', pools: [a, a]}\n")
	f.Add("version: x\n")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseYAML("f", []byte(s))
		if err != nil {
			if strings.Contains(err.Error(), "model.") {
				t.Fatalf("error names a Go type: %v", err)
			}
			return
		}
		out, err := MarshalYAML(d)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := ParseYAML("again", out)
		if err != nil {
			t.Fatalf("the encoding of an accepted document is refused: %v\n%s", err, out)
		}
		if same, _ := Equal(d, d2); !same || d.Version != d2.Version {
			t.Fatalf("round trip changed the document:\n%s", out)
		}
	})
}

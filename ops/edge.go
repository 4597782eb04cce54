package ops

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/store"
)

func init() {
	drainFile := func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.drainFile, "drain-file", "", "without Consul: the edge's drain flag file (present: the edge withdraws its VIPs)")
	}
	register(
		&command{name: "edge drain", args: "NODE", min: 1, max: 1, write: true, run: edgeDrain, flags: drainFile,
			summary: "make an edge node withdraw its VIPs (Consul key <prefix>/edges/NODE/drain, or --drain-file)",
			example: "ops --store consul://127.0.0.1:8500/v6pod edge drain ams-01\nops edge drain ams-01 --drain-file /run/v6pod/drain"},
		&command{name: "edge undrain", args: "NODE", min: 1, max: 1, write: true, run: edgeUndrain, flags: drainFile,
			summary: "let a drained edge node announce its VIPs again",
			example: "ops --store consul://127.0.0.1:8500/v6pod edge undrain ams-01"},
		&command{name: "edge status", args: "NODE", min: 1, max: 1, read: true, run: edgeStatus, flags: drainFile,
			summary: "show an edge node's drain flag, health, and the BGP state it reports (<prefix>/edges/NODE/bgp)",
			example: "ops --store consul://127.0.0.1:8500/v6pod edge status ams-01 -o json"},
	)
}

// edgeTarget is where an edge's drain flag lives.
type edgeTarget struct {
	node   string
	client *api.Client // nil: the flag file
	key    string      // <prefix>/edges/<node>/drain
	bgpKey string
	file   string
}

func (c *call) edgeTarget() (*edgeTarget, error) {
	node := c.args[0]
	if err := model.CheckName(node); err != nil {
		return nil, usagef("edge %q: %v", node, err)
	}
	t := &edgeTarget{node: node, file: c.o.drainFile}
	if t.file != "" {
		return t, nil
	}
	client, prefix, err := c.consulClient()
	if err != nil {
		return nil, err
	}
	if client == nil {
		return nil, usagef("edge %s: no Consul (use a consul:// store or --consul host:port) and no --drain-file", node)
	}
	t.client = client
	t.key = prefix + "/edges/" + node + "/drain"
	t.bgpKey = prefix + "/edges/" + node + "/bgp"
	return t, nil
}

// drained reads the flag; index is the key's ModifyIndex (Consul).
func (c *call) drained(t *edgeTarget) (bool, uint64, error) {
	if t.client == nil {
		_, err := os.Stat(t.file)
		if errors.Is(err, fs.ErrNotExist) {
			return false, 0, nil
		}
		return err == nil, 0, err
	}
	ctx, cancel := c.opCtx()
	defer cancel()
	p, _, err := t.client.KV().Get(t.key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return false, 0, fmt.Errorf("edge %s: %w", t.node, err)
	}
	if p == nil {
		return false, 0, nil
	}
	return true, p.ModifyIndex, nil
}

func (t *edgeTarget) where() string {
	if t.client == nil {
		return "file " + t.file
	}
	return "key " + t.key
}

func edgeDrain(c *call) error   { return setEdgeDrain(c, true) }
func edgeUndrain(c *call) error { return setEdgeDrain(c, false) }

func setEdgeDrain(c *call, on bool) error {
	t, err := c.edgeTarget()
	if err != nil {
		return err
	}
	cur, index, err := c.drained(t)
	if err != nil {
		return err
	}
	verb := map[bool]string{true: "drained", false: "undrained"}[on]
	if cur == on {
		fmt.Fprintf(c.e.stdout, "edge %s: already %s (%s), nothing written\n", t.node, verb, t.where())
		return nil
	}
	if c.o.dryRun {
		action := map[bool]string{true: "create", false: "delete"}[on]
		fmt.Fprintf(c.e.stdout, "dry run: would %s %s (edge %s %s); nothing written\n", action, t.where(), t.node, verb)
		return nil
	}
	value := []byte(fmt.Sprintf("drained by ops at %s\n", c.e.now().UTC().Format(time.RFC3339)))
	if t.client == nil {
		if on {
			err = os.WriteFile(t.file, value, 0o644)
		} else {
			err = os.Remove(t.file)
		}
		if err != nil {
			return fmt.Errorf("edge %s: %w", t.node, err)
		}
	} else {
		ctx, cancel := c.opCtx()
		defer cancel()
		q := (&api.WriteOptions{}).WithContext(ctx)
		var ok bool
		if on {
			ok, _, err = t.client.KV().CAS(&api.KVPair{Key: t.key, Value: value, ModifyIndex: 0}, q)
		} else {
			ok, _, err = t.client.KV().DeleteCAS(&api.KVPair{Key: t.key, ModifyIndex: index}, q)
		}
		if err != nil {
			return fmt.Errorf("edge %s: %w", t.node, err)
		}
		if !ok {
			return fmt.Errorf("edge %s: %w", t.node, store.ErrConflict)
		}
	}
	fmt.Fprintf(c.e.stdout, "edge %s: %s (%s)\n", t.node, verb, t.where())
	return nil
}

type edgeReport struct {
	Node    string          `json:"node"`
	Drained bool            `json:"drained"`
	Health  string          `json:"health"`
	BGP     json.RawMessage `json:"bgp"`
}

func edgeStatus(c *call) error {
	t, err := c.edgeTarget()
	if err != nil {
		return err
	}
	dr, _, err := c.drained(t)
	if err != nil {
		return err
	}
	rep := edgeReport{Node: t.node, Drained: dr, Health: healthUnknown, BGP: json.RawMessage("null")}
	if t.client != nil {
		ctx, cancel := c.opCtx()
		defer cancel()
		q := (&api.QueryOptions{}).WithContext(ctx)
		p, _, err := t.client.KV().Get(t.bgpKey, q)
		if err != nil {
			return fmt.Errorf("edge %s: %w", t.node, err)
		}
		if p != nil {
			if !json.Valid(p.Value) {
				return fmt.Errorf("edge %s: key %s does not hold JSON", t.node, t.bgpKey)
			}
			rep.BGP = json.RawMessage(bytes.TrimSpace(p.Value))
		}
		entries, _, err := t.client.Health().Service(serviceEdge, "", false, q)
		if err != nil {
			return fmt.Errorf("edge %s: consul: %w", t.node, err)
		}
		rep.Health = healthMissing
		for _, e := range entries {
			if e.Service.ID == t.node {
				rep.Health = e.Checks.AggregatedStatus()
			}
		}
	}
	if c.o.output == "json" {
		return printJSON(c.e.stdout, rep)
	}
	kv := newTable(c.e.stdout, "EDGE", rep.Node)
	kv.row("DRAINED", map[bool]string{true: "yes", false: "no"}[rep.Drained])
	kv.row("HEALTH", rep.Health)
	if err := kv.flush(); err != nil {
		return err
	}
	switch {
	case t.client == nil:
		fmt.Fprintln(c.e.stdout, "\nbgp: unknown (the edge reports it in Consul)")
	case string(rep.BGP) == "null":
		fmt.Fprintf(c.e.stdout, "\nbgp: nothing reported (%s is absent)\n", t.bgpKey)
	default:
		var buf bytes.Buffer
		json.Indent(&buf, rep.BGP, "", "  ")
		fmt.Fprintf(c.e.stdout, "\nbgp (%s):\n%s\n", t.bgpKey, buf.String())
	}
	return nil
}

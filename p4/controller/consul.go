package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/addr"
	"github.com/v6pod/v6pod/internal/store"
	"github.com/v6pod/v6pod/p4"
)

// consulEIP is the value of <prefix>/nat64/eips/<EIP>: a VIP name, or a
// JSON object with the same fields as an eips entry of the config.
type consulEIP struct {
	VIP      string `json:"vip"`
	Index    *int   `json:"index"`
	SYNRate  int64  `json:"syn_rate"`
	SYNBurst int64  `json:"syn_burst"`
}

// parseConsulEIPs turns the KV pairs under <prefix>/nat64/eips/ into EIP
// configs. Config EIPs win over Consul ones; bad keys are skipped and
// reported.
func (c *Controller) parseConsulEIPs(pairs api.KVPairs, keyPrefix string) ([]EIPConfig, []string) {
	var out []EIPConfig
	var bad []string
	vips := map[string]bool{}
	for _, v := range c.cfg.VIPs {
		vips[v.Name] = true
	}
	used := map[int]bool{}
	static := map[netip.Addr]bool{}
	for _, e := range c.cfg.EIPs {
		used[*e.Index] = true
		static[e.addr] = true
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].Key < pairs[j].Key })
	var pending []*EIPConfig
	for _, p := range pairs {
		name := strings.TrimPrefix(p.Key, keyPrefix)
		a, err := addr.Parse(name)
		if err != nil || !a.Is4() {
			bad = append(bad, fmt.Sprintf("%s: not an IPv4 address", p.Key))
			continue
		}
		if static[a] {
			continue
		}
		var v consulEIP
		val := strings.TrimSpace(string(p.Value))
		if strings.HasPrefix(val, "{") {
			dec := json.NewDecoder(strings.NewReader(val))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&v); err != nil {
				bad = append(bad, fmt.Sprintf("%s: %v", p.Key, err))
				continue
			}
		} else {
			v.VIP = val
		}
		if !vips[v.VIP] {
			bad = append(bad, fmt.Sprintf("%s: unknown vip %q", p.Key, v.VIP))
			continue
		}
		e := EIPConfig{Address: a.String(), VIP: v.VIP, Index: v.Index, SYNRate: v.SYNRate, SYNBurst: v.SYNBurst, addr: a}
		e.dst, _ = addr.Embed(c.cfg.prefix, a)
		if e.SYNRate <= 0 {
			e.SYNRate = p4.DefaultSYNRate
		}
		if e.SYNBurst <= 0 {
			e.SYNBurst = e.SYNRate
		}
		if e.Index != nil {
			if *e.Index < 0 || *e.Index >= p4.MaxEIPs || used[*e.Index] {
				bad = append(bad, fmt.Sprintf("%s: index %d taken or out of range", p.Key, *e.Index))
				continue
			}
			used[*e.Index] = true
		}
		out = append(out, e)
	}
	// EIPs without an index get one from a hash of the address (probing
	// past taken cells), so adding an EIP rarely moves another's cell.
	for i := range out {
		if out[i].Index == nil {
			pending = append(pending, &out[i])
		}
	}
	for _, e := range pending {
		h := fnv.New32a()
		h.Write([]byte(e.Address))
		idx := int(h.Sum32() % p4.MaxEIPs)
		for n := 0; used[idx] && n < p4.MaxEIPs; n++ {
			idx = (idx + 1) % p4.MaxEIPs
		}
		if used[idx] {
			bad = append(bad, fmt.Sprintf("%s: no free meter cell", e.Address))
			continue
		}
		used[idx] = true
		e.Index = &idx
	}
	kept := out[:0]
	for _, e := range out {
		if e.Index != nil {
			kept = append(kept, e)
		}
	}
	return kept, bad
}

// watchConsulEIPs follows <prefix>/nat64/eips/ with blocking queries and
// keeps the last good set when Consul fails.
func (c *Controller) watchConsulEIPs(ctx context.Context) {
	u, _ := url.Parse(c.cfg.EIPSource)
	client, prefix, err := store.ConsulClient(u, store.Options{})
	if err != nil {
		c.log.Error("eip_source", "err", err)
		return
	}
	keyPrefix := prefix + "/nat64/eips/"
	var index uint64
	backoff := 100 * time.Millisecond
	var lastBad string
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx)
		pairs, meta, err := client.KV().List(keyPrefix, q)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("consul: eips", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if meta.LastIndex < index {
			index = 0 // the index went backwards (agent restore): start over
		} else {
			index = meta.LastIndex
		}
		eips, bad := c.parseConsulEIPs(pairs, keyPrefix)
		if b := strings.Join(bad, "; "); b != "" && b != lastBad {
			c.log.Warn("consul: eips skipped", "problems", b)
			lastBad = b
		}
		c.mu.Lock()
		c.dynEIPs = eips
		c.eipsLoaded = true
		c.mu.Unlock()
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

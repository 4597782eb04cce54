package sim

import (
	"encoding/binary"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/v6pod/v6pod/p4"
)

// Verdict says what the pipeline did with a packet.
type Verdict int

// Verdicts, with the reason for drops.
const (
	Forwarded  Verdict = iota
	DropNotIP6         // not an IPv6 packet (or truncated IPv6 header)
	DropNoVIP          // destination is no configured EIP
	DropSYN            // TCP SYN over the EIP's meter rate
	DropNoSlot         // the VIP's maglev table has no entry for the slot
	DropNoPipe         // no pipeline committed
)

var verdictNames = [...]string{"forwarded", "not-ipv6", "no-vip", "syn-meter", "no-slot", "no-pipeline"}

func (v Verdict) String() string { return verdictNames[v] }

// Result is the outcome of one packet.
type Result struct {
	Verdict Verdict
	Port    uint32 // egress port when forwarded
	Frame   []byte // the forwarded frame (destination MAC rewritten)
	VIP     uint16 // VIP id, when the EIP matched
	Slot    uint32 // maglev slot, when hashed
	Hash    uint32 // the 5-tuple hash
}

// Header offsets of the parsed stack.
const (
	ethLen  = 14
	ip6Len  = 40
	tcpLen  = 20
	udpLen  = 8
	ethType = 12
)

// Process runs one Ethernet frame through access.p4's ingress: parse
// Ethernet/IPv6/TCP/UDP, eip_to_vip, the SYN meter, the 5-tuple hash into
// the VIP's table size, and the maglev table. The input is not modified.
func (s *Sim) Process(frame []byte) Result {
	// Parser (a truncated header stays invalid, as in v1model).
	if len(frame) < ethLen+ip6Len || binary.BigEndian.Uint16(frame[ethType:]) != 0x86dd {
		return Result{Verdict: DropNotIP6}
	}
	ip := frame[ethLen:]
	var src, dst [16]byte
	copy(src[:], ip[8:24])
	copy(dst[:], ip[24:40])
	proto := ip[6]
	l4 := ip[ip6Len:]
	var sport, dport uint16
	tcpValid, syn := false, false
	switch {
	case proto == 6 && len(l4) >= tcpLen:
		tcpValid = true
		sport, dport = binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
		syn = l4[13]&0x12 == 0x02
	case proto == 17 && len(l4) >= udpLen:
		sport, dport = binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pipe == nil {
		return Result{Verdict: DropNoPipe}
	}
	// eip_to_vip
	var kb [3 + 16]byte
	kb[0], kb[1] = byte(p4.FieldEIPDst>>8), byte(p4.FieldEIPDst)
	c := p4.Canonical(dst[:])
	kb[2] = byte(len(c))
	n := copy(kb[3:], c)
	e, ok := s.tables[p4.TableEIPToVIP][string(kb[:3+n])]
	if !ok {
		return Result{Verdict: DropNoVIP}
	}
	var vip, eipIndex uint16
	var size uint32
	for _, p := range e.Action.GetAction().Params {
		v, _ := p4.ToUint(p.Value)
		switch p.ParamId {
		case p4.ParamVIPID:
			vip = uint16(v)
		case p4.ParamTableSize:
			size = uint32(v)
		case p4.ParamEIPIndex:
			eipIndex = uint16(v)
		}
	}
	r := Result{VIP: vip}
	// SYN meter per EIP.
	if tcpValid && syn {
		if m := s.meters[p4.MeterSYN]; int(eipIndex) < len(m) {
			if m[eipIndex].colour(s.now()) == red {
				if cs := s.counters[p4.CounterSYNDropped]; int(eipIndex) < len(cs) {
					cs[eipIndex].packets++
				}
				r.Verdict = DropSYN
				return r
			}
		}
	}
	// hash(crc32, base 0, 5-tuple, max = table_size): v1model computes
	// base + hash % max; a zero max leaves the base.
	r.Hash = p4.FlowHash(src, dst, proto, sport, dport)
	if size > 0 {
		r.Slot = r.Hash % size
	}
	if cs := s.counters[p4.CounterVIPPackets]; int(vip) < len(cs) {
		cs[vip].packets++
		cs[vip].bytes += int64(len(frame))
	}
	// maglev
	me, ok := s.tables[p4.TableMaglev][maglevKey(vip, r.Slot)]
	if !ok {
		r.Verdict = DropNoSlot
		return r
	}
	sv := serverOf(me)
	out := append([]byte(nil), frame...)
	copy(out[0:6], sv.MAC[:])
	r.Verdict, r.Port, r.Frame = Forwarded, sv.Port, out
	return r
}

// maglevKey is key() of the maglev entry (vip, slot), built without
// allocating protobufs.
func maglevKey(vip uint16, slot uint32) string {
	var b [3 + 2 + 3 + 4]byte
	n := 0
	put := func(id uint32, v []byte) {
		c := p4.Canonical(v)
		b[n], b[n+1], b[n+2] = byte(id>>8), byte(id), byte(len(c))
		n += 3 + copy(b[n+3:], c)
	}
	var vb [2]byte
	var sb [4]byte
	binary.BigEndian.PutUint16(vb[:], vip)
	binary.BigEndian.PutUint32(sb[:], slot)
	put(p4.FieldMaglevVIP, vb[:])
	put(p4.FieldMaglevSlot, sb[:])
	return string(b[:n])
}

func exact(id uint32, v []byte) *p4v1.FieldMatch {
	return &p4v1.FieldMatch{FieldId: id, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: v}}}
}

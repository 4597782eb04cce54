// Package p4 holds access.p4's P4Info and the IDs, names and value
// encodings shared by the controller (p4/controller) and the simulator
// (p4/sim).
package p4

import (
	_ "embed"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"math/bits"
	"net/netip"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/encoding/prototext"
)

// The P4Info IDs fixed by access.p4's @id annotations.
const (
	TableEIPToVIP uint32 = 0x02000001 // AccessIngress.eip_to_vip
	TableMaglev   uint32 = 0x02000002 // AccessIngress.maglev

	FieldEIPDst     uint32 = 1 // eip_to_vip: hdr.ipv6.dst_addr, 128 bits
	FieldMaglevVIP  uint32 = 1 // maglev: meta.vip_id, 16 bits
	FieldMaglevSlot uint32 = 2 // maglev: meta.slot, 32 bits

	ActionSetVIP   uint32 = 0x01000001 // AccessIngress.set_vip
	ActionToServer uint32 = 0x01000002 // AccessIngress.to_server
	ActionDrop     uint32 = 0x01000003 // AccessIngress.drop

	ParamVIPID     uint32 = 1 // set_vip.vip_id, 16 bits
	ParamTableSize uint32 = 2 // set_vip.table_size, 32 bits
	ParamEIPIndex  uint32 = 3 // set_vip.eip_index, 16 bits
	ParamDMAC      uint32 = 1 // to_server.dmac, 48 bits
	ParamPort      uint32 = 2 // to_server.port, 9 bits

	CounterVIPPackets uint32 = 0x12000001 // AccessIngress.vip_packets, by VIP id
	CounterSYNDropped uint32 = 0x12000002 // AccessIngress.syn_dropped, by EIP index
	MeterSYN          uint32 = 0x14000001 // AccessIngress.syn_meter, by EIP index

	// MaxVIPs and MaxEIPs are the sizes of the indexed counters and meter:
	// VIP ids and EIP indices are below them.
	MaxVIPs = 4096
	MaxEIPs = 4096
	// MaxSlots is the maglev table's size: the sum of the VIPs' table sizes
	// must fit.
	MaxSlots = 1048576
	// DefaultSYNRate is the per-EIP SYN meter rate (packets per second)
	// unless configured.
	DefaultSYNRate = 50000
)

// Names maps every ID above to its fully qualified P4 name; match fields
// and params are named "<table or action name>/<field or param name>".
var Names = map[string]uint32{
	"AccessIngress.eip_to_vip":                   TableEIPToVIP,
	"AccessIngress.maglev":                       TableMaglev,
	"AccessIngress.eip_to_vip/hdr.ipv6.dst_addr": FieldEIPDst,
	"AccessIngress.maglev/meta.vip_id":           FieldMaglevVIP,
	"AccessIngress.maglev/meta.slot":             FieldMaglevSlot,
	"AccessIngress.set_vip":                      ActionSetVIP,
	"AccessIngress.to_server":                    ActionToServer,
	"AccessIngress.drop":                         ActionDrop,
	"AccessIngress.set_vip/vip_id":               ParamVIPID,
	"AccessIngress.set_vip/table_size":           ParamTableSize,
	"AccessIngress.set_vip/eip_index":            ParamEIPIndex,
	"AccessIngress.to_server/dmac":               ParamDMAC,
	"AccessIngress.to_server/port":               ParamPort,
	"AccessIngress.vip_packets":                  CounterVIPPackets,
	"AccessIngress.syn_dropped":                  CounterSYNDropped,
	"AccessIngress.syn_meter":                    MeterSYN,
}

//go:embed access.p4info.txtpb
var p4infoText []byte

//go:embed access.p4
var programText []byte

// P4InfoText returns the P4Info in protobuf text format.
func P4InfoText() []byte { return p4infoText }

// Program returns the P4_16 source of access.p4.
func Program() []byte { return programText }

// P4Info parses the embedded P4Info.
func P4Info() (*p4configv1.P4Info, error) {
	var info p4configv1.P4Info
	if err := prototext.Unmarshal(p4infoText, &info); err != nil {
		return nil, fmt.Errorf("p4: parse access.p4info.txtpb: %w", err)
	}
	return &info, nil
}

// Cookie identifies a pipeline (P4Info plus device config): the
// controller sets it with the pipeline and compares it to tell whether a
// device runs this program.
func Cookie(deviceConfig []byte) uint64 {
	h := fnv.New64a()
	h.Write(p4infoText)
	h.Write([]byte{0})
	h.Write(deviceConfig)
	return h.Sum64()
}

// Canonical returns b in the P4Runtime canonical binary-string form: no
// leading zero bytes, zero as a single 0x00 byte (P4Runtime spec 8.4).
// It returns a sub-slice of b.
func Canonical(b []byte) []byte {
	i := 0
	for i < len(b)-1 && b[i] == 0 {
		i++
	}
	if len(b) == 0 {
		return []byte{0}
	}
	return b[i:]
}

// Uint returns v in canonical form.
func Uint(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return append([]byte(nil), Canonical(b[:])...)
}

// Addr returns an IPv6 address (or an IPv4 one, mapped) in canonical form.
func Addr(a netip.Addr) []byte {
	b := a.As16()
	return append([]byte(nil), Canonical(b[:])...)
}

// MAC returns a 6-byte MAC in canonical form.
func MAC(m [6]byte) []byte { return append([]byte(nil), Canonical(m[:])...) }

// FitsBits reports whether the value b fits in bitwidth bits.
func FitsBits(b []byte, bitwidth int32) bool {
	b = Canonical(b)
	n := (len(b)-1)*8 + bits.Len8(b[0])
	return n <= int(bitwidth)
}

// ToUint decodes a binary string of at most 8 significant bytes.
func ToUint(b []byte) (uint64, error) {
	b = Canonical(b)
	if len(b) > 8 {
		return 0, fmt.Errorf("p4: value of %d bytes does not fit 64 bits", len(b))
	}
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v, nil
}

// FlowHash is access.p4's flow hash: bmv2's crc32 (IEEE CRC-32) over
// src ++ dst ++ next header ++ source port ++ destination port, 37 bytes.
// The slot is FlowHash mod the VIP's table size.
func FlowHash(src, dst [16]byte, proto uint8, sport, dport uint16) uint32 {
	var b [37]byte
	copy(b[0:16], src[:])
	copy(b[16:32], dst[:])
	b[32] = proto
	binary.BigEndian.PutUint16(b[33:35], sport)
	binary.BigEndian.PutUint16(b[35:37], dport)
	return crc32.ChecksumIEEE(b[:])
}

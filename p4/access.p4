/*
 * access.p4 — the v6pod NAT64 access tier (P4_16, v1model, for bmv2's
 * simple_switch_grpc as p4c 1.2.4 compiles it).
 *
 * IPv6 clients reach an IPv4 address (EIP) at <prefix>::<EIP>. The switch
 * maps the destination to the VIP (the NAT64 cluster serving the EIP),
 * hashes the 5-tuple into a slot of that VIP's Maglev table, and sends the
 * packet to the NAT64 server owning the slot (its MAC, out of its port).
 * No connection state: every switch with the same tables sends a flow to
 * the same server. TCP SYNs are metered per EIP; SYNs over the rate are
 * dropped and counted.
 *
 * The @id annotations fix the P4Info IDs; access.p4info.txtpb beside this
 * file is kept in step by hand and checked by p4/p4info's tests. The
 * controller (p4/controller) and the simulator (p4/sim) use those IDs.
 *
 * Hash: crc32 (bmv2's IEEE CRC-32) over src_addr ++ dst_addr ++
 * next_hdr ++ src_port ++ dst_port (37 bytes; ports 0 for other
 * protocols), reduced modulo the VIP's table size. p4/sim computes the
 * same value.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_IPV6 = 0x86dd;
const bit<8>  PROTO_TCP = 6;
const bit<8>  PROTO_UDP = 17;
#define MAX_VIPS 4096
#define MAX_EIPS 4096

header ethernet_t {
    bit<48> dst_addr;
    bit<48> src_addr;
    bit<16> ether_type;
}

header ipv6_t {
    bit<4>   version;
    bit<8>   traffic_class;
    bit<20>  flow_label;
    bit<16>  payload_len;
    bit<8>   next_hdr;
    bit<8>   hop_limit;
    bit<128> src_addr;
    bit<128> dst_addr;
}

header tcp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<32> seq_no;
    bit<32> ack_no;
    bit<4>  data_offset;
    bit<4>  res;
    bit<8>  flags; /* CWR ECE URG ACK PSH RST SYN FIN */
    bit<16> window;
    bit<16> checksum;
    bit<16> urgent_ptr;
}

header udp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<16> length;
    bit<16> checksum;
}

struct headers_t {
    ethernet_t ethernet;
    ipv6_t     ipv6;
    tcp_t      tcp;
    udp_t      udp;
}

struct metadata_t {
    bit<16> vip_id;
    bit<32> table_size;
    bit<16> eip_index;
    bit<32> slot;
    bit<16> src_port;
    bit<16> dst_port;
    bit<2>  syn_color;
}

parser AccessParser(packet_in pkt, out headers_t hdr,
                    inout metadata_t meta,
                    inout standard_metadata_t std) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV6: parse_ipv6;
            default: accept;
        }
    }
    state parse_ipv6 {
        pkt.extract(hdr.ipv6);
        transition select(hdr.ipv6.next_hdr) {
            PROTO_TCP: parse_tcp;
            PROTO_UDP: parse_udp;
            default: accept;
        }
    }
    state parse_tcp {
        pkt.extract(hdr.tcp);
        meta.src_port = hdr.tcp.src_port;
        meta.dst_port = hdr.tcp.dst_port;
        transition accept;
    }
    state parse_udp {
        pkt.extract(hdr.udp);
        meta.src_port = hdr.udp.src_port;
        meta.dst_port = hdr.udp.dst_port;
        transition accept;
    }
}

control AccessVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

control AccessIngress(inout headers_t hdr, inout metadata_t meta,
                      inout standard_metadata_t std) {

    @id(0x12000001) counter(MAX_VIPS, CounterType.packets_and_bytes) vip_packets;
    @id(0x12000002) counter(MAX_EIPS, CounterType.packets) syn_dropped;
    @id(0x14000001) meter(MAX_EIPS, MeterType.packets) syn_meter;

    @id(0x01000003) action drop() {
        mark_to_drop(std);
    }

    @id(0x01000001) action set_vip(bit<16> vip_id, bit<32> table_size,
                                   bit<16> eip_index) {
        meta.vip_id = vip_id;
        meta.table_size = table_size;
        meta.eip_index = eip_index;
    }

    @id(0x01000002) action to_server(bit<48> dmac, bit<9> port) {
        hdr.ethernet.dst_addr = dmac;
        std.egress_spec = port;
    }

    /* <prefix>::<EIP> → the VIP serving the EIP. */
    @id(0x02000001) table eip_to_vip {
        key = { hdr.ipv6.dst_addr: exact @id(1); }
        actions = { set_vip; @defaultonly drop; }
        const default_action = drop();
        size = MAX_EIPS;
    }

    /* (VIP, slot) → the NAT64 server owning the slot. */
    @id(0x02000002) table maglev {
        key = {
            meta.vip_id: exact @id(1);
            meta.slot:   exact @id(2);
        }
        actions = { to_server; @defaultonly drop; }
        const default_action = drop();
        size = 1048576;
    }

    apply {
        if (!hdr.ipv6.isValid()) {
            drop();
            return;
        }
        if (!eip_to_vip.apply().hit) {
            return;
        }
        /* SYN (without ACK) over the EIP's rate: drop and count. */
        if (hdr.tcp.isValid() && (hdr.tcp.flags & 0x12) == 0x02) {
            syn_meter.execute_meter((bit<32>) meta.eip_index, meta.syn_color);
            if (meta.syn_color == 2) { /* V1MODEL_METER_COLOR_RED */
                syn_dropped.count((bit<32>) meta.eip_index);
                drop();
                return;
            }
        }
        hash(meta.slot, HashAlgorithm.crc32, 32w0,
             { hdr.ipv6.src_addr, hdr.ipv6.dst_addr, hdr.ipv6.next_hdr,
               meta.src_port, meta.dst_port },
             meta.table_size);
        vip_packets.count((bit<32>) meta.vip_id);
        maglev.apply();
    }
}

control AccessEgress(inout headers_t hdr, inout metadata_t meta,
                     inout standard_metadata_t std) {
    apply { }
}

control AccessComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

control AccessDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.ipv6);
        pkt.emit(hdr.tcp);
        pkt.emit(hdr.udp);
    }
}

V1Switch(AccessParser(), AccessVerifyChecksum(), AccessIngress(),
         AccessEgress(), AccessComputeChecksum(), AccessDeparser()) main;

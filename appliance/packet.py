"""The decoded packet: what every stage after decode reads.

One plain slotted object per packet; decode fills it, never raises, and records
what was wrong with the packet in `anomalies` (Suricata-style event names such
as "ipv4.trunc_pkt") instead.
"""

# IP protocol numbers the pipeline knows by name.
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
PROTO_NAMES = {TCP: "TCP", UDP: "UDP", ICMP: "ICMP", ICMPV6: "IPv6-ICMP"}

# TCP flag bits.
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


class Packet:
    __slots__ = (
        "ts",          # float seconds (pcap timestamp or arrival time)
        "ip_version",  # 4, 6, or 0 when there is no IP layer (ARP, unsupported encapsulation)
        "src", "dst",  # addresses as text ("10.0.0.1", "2001:db8::1"); "" when ip_version == 0
        "proto",       # IP protocol number of the transport (after IPv6 extension headers); -1 if none
        "sport", "dport",  # ports; 0 when the protocol has none
        "tcp_flags", "seq", "ack",  # TCP only, else 0
        "urg_ptr",     # TCP urgent pointer when URG is set, else 0
        "window",      # TCP window field (unscaled), else 0
        "wscale",      # TCP window scale option (shift), or None when absent
        "tsopt",       # TCP timestamps option as (TSval, TSecr), or None when absent
        "discard",     # set by flow tracking: why the receiving TCP stack discards this
                       # segment (an anomaly name), "" when it accepts it
        "icmp_type", "icmp_code", "icmp_id",  # ICMP/ICMPv6 only, else -1/-1/0
        "payload",     # transport payload bytes (may be shorter than on the wire if truncated)
        "ttl",         # IPv4 TTL / IPv6 hop limit
        "length",      # length of the L3 packet on the wire (IP total length / what was captured)
        "l3",          # the raw L3 packet bytes (IPv4/IPv6 header onward)
        "l4_off",      # offset of the TCP/UDP header in l3 (0 when there is none)
        "vlan",        # tuple of VLAN ids, outermost first; () when untagged
        "frag",        # None, or (ident, offset_bytes, more_fragments) for an IP fragment
        "quote",       # ICMP/ICMPv6 error: the packet it quotes (a Packet down to its ports or
                       # echo id: conntrack relates the error to that connection); else None
        "unread",      # the transport header could not be read (IPv6 extension-header chain
                       # cut or past the decoder's limit, transport header cut): the ports and
                       # maybe the protocol are not the ones the kernel's conntrack sees
        "anomalies",   # list of event names; empty for a clean packet
        "encap",       # "" or the name of an unsupported/non-IP layer ("arp", "mpls", "pppoe", "ethertype-0x88cc")
        "in_iface",    # live: ingress interface name; replay: ""
        "pcap_cnt",    # replay: 1-based packet number in its file; live: 0
        "pcap_file",   # replay: the capture file's name; live: ""
        "tunnel",      # GWLB: the GENEVE endpoint (GWLBe ENI id) the packet came through, part
                       # of its flow key (two VPCs may use the same addresses); else 0
        "src_raw", "dst_raw",  # decode: the addresses as the header has them (the flow key packs
                       # them: flow._key); b"" on a packet made otherwise (the key reads the text)
        "from_initiator",  # FlowTable.lookup: its sender is the flow's initiator (its header is the
                       # flow's own); the detector's header candidates are cached by it (an ICMP
                       # echo reply the initiator sends is to_client by its type, not by its side)
    )

    def __init__(self, ts=0.0):
        self.ts = ts
        self.ip_version = 0
        self.src = self.dst = ""
        self.proto = -1
        self.sport = self.dport = 0
        self.tcp_flags = self.seq = self.ack = self.urg_ptr = self.window = 0
        self.wscale = self.tsopt = None
        self.discard = ""
        self.icmp_type = self.icmp_code = -1
        self.icmp_id = 0
        self.payload = b""
        self.ttl = 0
        self.length = 0
        self.l3 = b""
        self.l4_off = 0
        self.vlan = ()
        self.frag = None
        self.quote = None
        self.unread = False
        self.anomalies = []
        self.encap = ""
        self.in_iface = ""
        self.pcap_cnt = 0
        self.pcap_file = ""
        self.tunnel = 0
        self.src_raw = self.dst_raw = b""
        self.from_initiator = True

    def __repr__(self):
        return (f"Packet(v{self.ip_version} {self.src}:{self.sport} -> {self.dst}:{self.dport} "
                f"proto={self.proto} flags={self.tcp_flags:#x} len={self.length} "
                f"payload={len(self.payload)} anomalies={self.anomalies} encap={self.encap!r})")


from .compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())

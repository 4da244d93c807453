"""reject.py builds the RST / ICMP unreachable answers with struct; scapy checks them."""
from scapy.all import IP, IPv6, TCP, UDP, ICMP, ICMPv6DestUnreach, raw

from appliance.decode import decode_l3
from appliance.reject import answer, tcp_reset, unreachable


def _pkt(scapy_pkt):
    return decode_l3(raw(scapy_pkt))


def test_tcp_reset_for_a_syn_acks_what_it_sent():
    syn = _pkt(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=23, flags="S", seq=1000))
    rst = IP(tcp_reset(syn))
    assert (rst.src, rst.dst, rst[TCP].sport, rst[TCP].dport) == ("10.0.0.2", "10.0.0.1", 23, 40000)
    assert rst[TCP].flags == "RA" and rst[TCP].seq == 0 and rst[TCP].ack == 1001   # SYN counts one
    # checksums as scapy computes them
    again = IP(raw(rst.__class__(raw(rst))))
    del again.chksum, again[TCP].chksum
    assert IP(raw(again)).chksum == rst.chksum and IP(raw(again))[TCP].chksum == rst[TCP].chksum


def test_tcp_reset_for_data_takes_the_ack_as_seq():
    data = _pkt(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="PA", seq=5, ack=777) / b"hello")
    rst = IP(tcp_reset(data))
    assert rst[TCP].flags.R and rst[TCP].seq == 777


def test_tcp_reset_ipv6():
    syn = _pkt(IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2, flags="S", seq=9))
    rst = IPv6(tcp_reset(syn))
    assert (rst.src, rst.dst, rst[TCP].ack) == ("fd00::2", "fd00::1", 10)
    chk = rst[TCP].chksum
    del rst[TCP].chksum
    assert IPv6(raw(rst))[TCP].chksum == chk


def test_unreachable_quotes_the_original_v4_and_v6():
    orig = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=9) / (b"x" * 20)
    icmp = IP(unreachable(_pkt(orig)))
    assert (icmp.src, icmp.dst, icmp[ICMP].type, icmp[ICMP].code) == ("10.0.0.2", "10.0.0.1", 3, 13)
    assert raw(icmp[ICMP].payload).startswith(raw(orig)[:28])
    orig6 = IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5000, dport=9) / b"y"
    icmp6 = IPv6(unreachable(_pkt(orig6)))
    assert icmp6[ICMPv6DestUnreach].type == 1 and icmp6[ICMPv6DestUnreach].code == 1
    chk = icmp6[ICMPv6DestUnreach].cksum
    del icmp6[ICMPv6DestUnreach].cksum
    assert IPv6(raw(icmp6))[ICMPv6DestUnreach].cksum == chk


def test_errors_and_resets_are_never_answered():
    assert answer(_pkt(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="R"))) is None
    assert answer(_pkt(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=3, code=1) / IP() / UDP())) is None
    assert answer(decode_l3(b"\x00" * 10)) is None


# -- rate limits: ICMP answers as the kernel limits its own; RSTs never ------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_icmp_answers_per_destination_burst_six_then_one_per_interval():
    from appliance.reject import IcmpLimit
    clock = Clock()
    lim = IcmpLimit(v4_interval=1.0, per_sec=1000, burst=50, clock=clock)
    assert [lim.allow(4, "10.0.0.1") for _ in range(8)] == [True] * 6 + [False] * 2
    assert lim.allow(4, "10.0.0.9")                      # another destination has its own bucket
    clock.now += 0.5
    assert not lim.allow(4, "10.0.0.1")
    clock.now += 0.5
    assert lim.allow(4, "10.0.0.1") and not lim.allow(4, "10.0.0.1")
    assert lim.suppressed == 4


def test_icmp_answers_global_bucket_caps_many_spoofed_sources():
    from appliance.reject import IcmpLimit
    clock = Clock()
    lim = IcmpLimit(v4_interval=1.0, v6_interval=1.0, per_sec=100, burst=50, clock=clock)
    sent = sum(lim.allow(4, f"10.0.{i // 250}.{i % 250}") for i in range(1000))
    assert sent == 50 and lim.suppressed == 950         # the burst, whatever the sources
    clock.now += 1.0
    sent = sum(lim.allow(6, f"fd00::{i:x}") for i in range(1000))
    assert sent == 50                                    # refilled at 100/s, capped at the burst


def test_icmp_limit_interval_zero_means_no_per_destination_limit_and_table_is_bounded():
    from appliance.reject import IcmpLimit
    clock = Clock()
    lim = IcmpLimit(v4_interval=0, per_sec=10_000, burst=10_000, clock=clock, max_destinations=100)
    assert all(lim.allow(4, "10.0.0.1") for _ in range(100))
    lim = IcmpLimit(v4_interval=1.0, per_sec=10_000, burst=10_000, clock=clock, max_destinations=100)
    for i in range(1000):
        lim.allow(4, f"10.1.{i // 250}.{i % 250}")
    assert len(lim.dests) == 100



def test_icmp_limits_shared_by_workers_add_up_to_the_kernels():
    """Each worker has its own limit and queue-balance spreads one spoofed victim's packets over
    all of them (found by review: 2 workers answered 2x the kernel's limits, a burst of 12):
    with `share` = the workers, the answers of all of them together stay within the kernel's."""
    from appliance.reject import IcmpLimit
    clock = Clock()
    for workers in (1, 2, 3):
        lims = [IcmpLimit(v4_interval=1.0, per_sec=1000, burst=50, clock=clock, share=workers) for _ in range(workers)]
        burst = sum(lim.allow(4, "192.0.2.1") for _ in range(10) for lim in lims)
        assert burst == 6                                  # the kernel's per-destination burst, in all
        clock.now += 10.0                                  # each answer costs `workers` seconds of tokens
        later = 0
        for _ in range(100):
            clock.now += 0.1
            later += sum(lim.allow(4, "192.0.2.1") for lim in lims)
        assert 9 <= later <= 16                            # ~1 a second, as the kernel (full again after 10 s: +6)
        spoofed = sum(lim.allow(4, f"10.0.{i // 250}.{i % 250}") for i in range(1000) for lim in lims)
        assert spoofed <= 50                               # the global burst, in all


def test_icmp_limits_shared_by_many_workers_still_answer():
    """Past 6 workers a share of the per-destination burst is below one answer: each keeps one
    (review s12: 7 or more workers answered nothing, a reject rule became a silent drop)."""
    from appliance.reject import IcmpLimit
    clock = Clock()
    for workers in (7, 16, 64):
        lim = IcmpLimit(v4_interval=1.0, per_sec=1000, burst=50, clock=clock, share=workers)
        assert lim.allow(4, "192.0.2.1")
        clock.now += workers                               # one interval's worth for each worker
        assert lim.allow(4, "192.0.2.1")

"""The pcapng writer (output/pcapng.py): what it writes is read back by dpkt, scapy and
tshark (packets, flow_id comments, snaplen, interface names); rotation keeps the files
bounded; a failing disk is counted, never raised, and leaves a valid file. And the
`pcap_log` config section's checks (FILE:LINE)."""
import os
import shutil
import subprocess
import sys
import textwrap
import time

import dpkt
import pytest
from scapy.all import IP, TCP, Raw, raw
from scapy.utils import PcapNgReader

from appliance.config import ConfigError, load_config
from appliance.output.pcap_log import PcapLogConfig
from appliance.output import pcapng
from appliance.output.pcapng import PcapngWriter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T0 = 1_700_000_000.25


def packet(i, size=40):
    return raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000 + i, dport=80) / Raw(b"x" * size))


def tshark(path, *fields):
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed (dev/setup.sh)")
    args = [a for f in fields for a in ("-e", f)]
    r = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split("|") for line in r.stdout.splitlines()]


def test_written_packets_read_back_by_dpkt_scapy_and_tshark(tmp_path):
    w = PcapngWriter(str(tmp_path), "t", max_bytes=1 << 20, keep=2)
    pkts = [packet(i, size=i * 7) for i in range(5)]
    for i, p in enumerate(pkts):
        w.write(T0 + i, p, comment=f"flow_id={1000 + i}" if i != 3 else "", iface="eth1" if i % 2 else "eth0")
    w.close()
    path = tmp_path / "t.pcapng"

    with open(path, "rb") as f:
        r = dpkt.pcapng.Reader(f)
        assert r.datalink() == 101                      # LINKTYPE_RAW: the L3 bytes
        got = list(r)
    assert [bytes(b) for _, b in got] == pkts
    assert [round(float(ts), 6) for ts, _ in got] == [T0 + i for i in range(5)]

    with PcapNgReader(str(path)) as r:
        sc = list(r)
    assert [raw(p) for p in sc] == pkts
    assert [p.comment for p in sc] == [b"flow_id=1000", b"flow_id=1001", b"flow_id=1002", None, b"flow_id=1004"]

    rows = tshark(path, "frame.comment", "ip.src", "tcp.srcport", "frame.interface_name")
    assert [r[0] for r in rows] == ["flow_id=1000", "flow_id=1001", "flow_id=1002", "", "flow_id=1004"]
    assert [r[2] for r in rows] == [str(40000 + i) for i in range(5)]
    assert [r[3] for r in rows] == ["eth0", "eth1", "eth0", "eth1", "eth0"]


def test_snaplen_cuts_packets_and_keeps_their_length(tmp_path):
    w = PcapngWriter(str(tmp_path), "s", max_bytes=1 << 20, keep=1, snaplen=64)
    big = packet(0, size=1000)
    w.write(T0, big, comment="flow_id=7")
    w.close()
    rows = tshark(tmp_path / "s.pcapng", "frame.cap_len", "frame.len", "frame.comment")
    assert rows == [["64", str(len(big)), "flow_id=7"]]


def test_rotation_bounds_the_files_and_each_stays_readable(tmp_path):
    max_bytes, keep = 4096, 2
    w = PcapngWriter(str(tmp_path), "r", max_bytes=max_bytes, keep=keep)
    for i in range(400):
        w.write(T0 + i, packet(i, size=200), comment=f"flow_id={i}")
    w.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["r.1.pcapng", "r.2.pcapng", "r.pcapng"]
    assert w.rotations > keep and w.lost == 0
    block = 28 + 40 + 260 + 20                          # one packet's block, comment included
    seen = []
    for n in names:
        assert os.path.getsize(tmp_path / n) <= max_bytes + block
        seen += [int(r[0].split("=")[1]) for r in tshark(tmp_path / n, "frame.comment")]
    assert max(seen) == 399 and len(seen) == len(set(seen))   # the newest kept, none twice


def test_a_file_left_by_an_earlier_run_is_rotated_not_appended_to(tmp_path):
    for run in range(2):
        w = PcapngWriter(str(tmp_path), "q0", max_bytes=1 << 20, keep=3)
        w.write(T0 + run, packet(run), comment=f"flow_id={run}")
        w.close()
    assert tshark(tmp_path / "q0.pcapng", "frame.comment") == [["flow_id=1"]]
    assert tshark(tmp_path / "q0.1.pcapng", "frame.comment") == [["flow_id=0"]]


FULL_DISK = textwrap.dedent("""\
    import resource, signal, sys
    sys.path.insert(0, sys.argv[2])
    from appliance.output.pcapng import PcapngWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # past the limit: EFBIG, as a full disk's ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
    w = PcapngWriter(sys.argv[1], "f", max_bytes=1 << 20, keep=1)
    for i in range(40):
        w.write(1.0 + i, bytes([0x45]) + bytes(199), comment="flow_id=%d" % i)
    w.close()                                          # (what waits is written here)
    print(w.packets, w.lost)
    """)


def test_a_full_disk_is_counted_never_raised_and_the_file_stays_valid(tmp_path):
    r = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path), REPO], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    written, lost = map(int, r.stdout.split())
    assert written > 0 and lost > 0 and written + lost == 40
    assert r.stderr.count("cannot write") == 1          # said once, not per packet
    # the block cut short by the limit was truncated away: every whole packet reads back
    rows = tshark(tmp_path / "f.pcapng", "frame.comment")
    assert [r[0] for r in rows] == [f"flow_id={i}" for i in range(written)]


def test_a_missing_directory_is_created_and_an_impossible_one_counted(tmp_path):
    w = PcapngWriter(str(tmp_path / "a" / "b"), "x", max_bytes=1 << 20, keep=1)
    w.write(T0, packet(0))
    w.close()
    assert w.packets == 1 and (tmp_path / "a" / "b" / "x.pcapng").exists()
    (tmp_path / "file").write_text("")
    w = PcapngWriter(str(tmp_path / "file" / "sub"), "x", max_bytes=1 << 20, keep=1)
    w.write(T0, packet(0))                              # a file where the directory should be
    w.write(T0, packet(1))
    assert (w.packets, w.lost) == (0, 2)


def config(tmp_path, text):
    p = tmp_path / "appliance.yaml"
    p.write_text("interfaces: {outside: eth0, inside: eth1}\n" + text)
    return load_config(p)


def test_pcap_log_config(tmp_path):
    cfg = config(tmp_path, "pcap_log: {dir: pcaps, mode: all, max_bytes: 10M, keep: 3, snaplen: 128, "
                           "ring_packets: 4, ring_bytes: 1M}\n")
    assert cfg.pcap_log == PcapLogConfig(dir=str(tmp_path / "pcaps"), mode="all", max_bytes=10 << 20, keep=3,
                                         snaplen=128, ring_packets=4, ring_bytes=1 << 20)
    assert config(tmp_path, "pcap_log: {dir: /x}\n").pcap_log == PcapLogConfig(dir="/x")
    assert config(tmp_path, "pcap_log: null\n").pcap_log is None
    assert config(tmp_path, "").pcap_log is None


def test_pcap_log_problems_are_file_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        config(tmp_path, "pcap_log:\n  mode: alert\n  max_bytes: 1K\n  keep: 0\n  snaplen: 10\n"
                         "  ring_packets: many\n  ring_bytes: 2G\n  bogus: 1\n")
    p = tmp_path / "appliance.yaml"
    got = "\n".join(e.value.problems)
    for line, text in ((1 + 1, "pcap_log.dir is required"), (3, "pcap_log.mode must be one of alerts, all"),
                       (4, "pcap_log.max_bytes must be a size"), (5, "pcap_log.keep must be an integer from 1"),
                       (6, "pcap_log.snaplen must be an integer from 64"),
                       (7, "pcap_log.ring_packets must be an integer"), (8, "pcap_log.ring_bytes must be a size"),
                       (9, "unknown key pcap_log.'bogus'")):
        assert f"{p}:{line}: {text}" in got, got
    with pytest.raises(ConfigError) as e:
        config(tmp_path, "pcap_log: {dir: ''}\n")
    assert e.value.problems == [f"{p}:2: pcap_log.dir must be a directory path, got ''"]
    with pytest.raises(ConfigError) as e:
        config(tmp_path, "pcap_log: /var/log/pcaps\n")
    assert e.value.problems == [f"{p}:2: pcap_log must be a mapping of dir, mode, max_bytes, keep, snaplen, "
                                "ring_packets, ring_bytes"]


def test_sighup_applies_a_changed_pcap_log_section(tmp_path):
    from appliance.config import reload_config
    running = config(tmp_path, "")
    (tmp_path / "appliance.yaml").write_text("interfaces: {outside: eth0, inside: eth1}\n"
                                              "pcap_log: {dir: /var/log/pcaps, mode: all}\n")
    new, changed = reload_config(running, running)
    assert new.pcap_log == PcapLogConfig(dir="/var/log/pcaps", mode="all") and changed == []


def test_capture_refuses_what_it_cannot_do_before_starting(tmp_path):
    def capture(*args):
        return subprocess.run([sys.executable, "-m", "appliance", "capture", *map(str, args)], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    cfg = tmp_path / "appliance.yaml"
    cfg.write_text("interfaces: {outside: eth0, inside: nosuch9}\nworkers: 0\n")
    out = tmp_path / "x.pcapng"
    r = capture("--iface", "inside", "--config", cfg, "--duration", 1, "--out", out)
    assert r.returncode == 2 and f"{cfg}:2: workers must be an integer" in r.stderr
    cfg.write_text("interfaces: {outside: eth0, inside: nosuch9}\n")
    r = capture("--iface", "inside", "--config", cfg, "--duration", 1, "--out", out)
    assert r.returncode == 2 and "interface 'nosuch9' does not exist on this host" in r.stderr
    r = capture("--iface", "eth0+", "--duration", 1, "--out", out)
    assert r.returncode == 2 and "is not inside, outside or an interface name" in r.stderr
    for bad in (("--duration", 0), ("--duration", 1, "--max-bytes", "1K"), ("--duration", 1, "--count", 0)):
        r = capture("--iface", "lo", *bad, "--out", out)
        assert r.returncode == 2 and "error:" in r.stderr, bad
    assert not out.exists()


def test_blocks_wait_for_one_write_until_the_tick(tmp_path):
    """The writer gathers blocks (one os.write per block was the log's main cost): the file
    holds its header alone until the tick, `packets` counts what reached the file."""
    w = PcapngWriter(str(tmp_path), "b", max_bytes=1 << 20, keep=1)
    for i in range(5):
        w.write(T0 + i, packet(i), comment=f"flow_id={i}", iface="eth1")
    path = tmp_path / "b.pcapng"
    assert os.path.getsize(path) == len(pcapng.section_header()) and w.packets == 0
    w.tick()
    assert w.packets == 5
    assert [r[0] for r in tshark(path, "frame.comment")] == [f"flow_id={i}" for i in range(5)]
    w.write(T0 + 5, packet(5), comment="flow_id=5", iface="eth1")
    w.close()                                           # close writes what waits
    assert w.packets == 6
    assert [r for r in tshark(path, "frame.comment", "frame.interface_name")][-1] == ["flow_id=5", "eth1"]


def test_blocks_are_written_past_flush_bytes_or_a_second_after_the_first(tmp_path):
    w = PcapngWriter(str(tmp_path), "f", max_bytes=1 << 30, keep=1)
    size = pcapng.FLUSH_BYTES // 20
    for i in range(25):                                  # past FLUSH_BYTES: written without a tick
        w.write(T0 + i, packet(i, size=size))
    assert w.packets >= 20 and os.path.getsize(tmp_path / "f.pcapng") > pcapng.FLUSH_BYTES
    w.tick()
    before = w.packets
    w.write(T0 + 30, packet(30))
    time.sleep(pcapng.FLUSH_SECONDS + 0.1)
    w.write(T0 + 31, packet(31))                         # the first has waited a second: both written
    assert w.packets == before + 2
    w.close()


SHORT_WRITE = textwrap.dedent("""\
    import os, resource, signal, sys
    sys.path.insert(0, sys.argv[2])
    from appliance.output.pcapng import PcapngWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    w = PcapngWriter(sys.argv[1], "s", max_bytes=1 << 20, keep=1)
    for i in range(6):                                  # eth0's description and 6 packets: they fit
        w.write(1.0 + i, bytes([0x45]) + bytes(199), comment="flow_id=%d" % i, iface="eth0")
    w.tick()
    # room for a part of each flush: eth1's description cut, then some of its packets
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(w.path) + int(sys.argv[3]), resource.RLIM_INFINITY))
    for i in range(6, 30):
        w.write(1.0 + i, bytes([0x45]) + bytes(199), comment="flow_id=%d" % i, iface="eth1")
    w.tick()
    print(w.packets, w.lost)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    w.write(100.0, bytes([0x45]) + bytes(199), comment="flow_id=100", iface="eth1")   # room again
    w.close()
    print(w.packets, w.lost)
    """)


@pytest.mark.parametrize("room", [10, 1200])
def test_a_short_write_keeps_the_whole_blocks_and_describes_a_lost_interface_again(tmp_path, room):
    """A flush cut short (a full disk) keeps the whole blocks that fit: with 10 bytes of room
    eth1's description is cut too, and is written again before eth1's next packet."""
    r = subprocess.run([sys.executable, "-c", SHORT_WRITE, str(tmp_path), REPO, str(room)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (written, lost), after = [tuple(map(int, line.split())) for line in r.stdout.split("\n")[:2]]
    assert (written == 6) == (room == 10) and written < 30 and written + lost == 30 and after == (written + 1, lost)
    rows = tshark(tmp_path / "s.pcapng", "frame.comment", "frame.interface_name")
    assert rows == [[f"flow_id={i}", "eth0" if i < 6 else "eth1"] for i in range(written)] + [["flow_id=100", "eth1"]]
    assert "cannot write" in r.stderr and "writing again" in r.stderr

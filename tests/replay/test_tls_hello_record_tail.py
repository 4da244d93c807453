"""rvcompiled: a ClientHello record that goes on past the hello, its tail in a later segment,
crashed the TLS reader (ClientHelloReader.feed: self.parser is None after the first hello,
tls.py:183 -> AttributeError -> engine.AttributeError anomaly + internal_errors), pure and
compiled alike."""
import json
import os
import struct
import subprocess
import sys

from replaykit import REPO, Capture, TcpConn, client_hello


def test_hello_record_tail_in_a_later_segment_is_no_internal_error(tmp_path):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.5", 41001, "198.51.100.7", 443)
    c.handshake()
    hello = client_hello("tail.example")
    tail = b"\x0b\x00\x00\x06" + b"\x00" * 6            # another handshake message in the same record
    record = b"\x16\x03\x01" + struct.pack("!H", len(hello) + len(tail)) + hello + tail
    c.send(record[:5 + len(hello)])                       # the hello whole, the record not yet
    c.send(record[5 + len(hello):])                       # the record's tail
    c.send(b"\x16\x03\x01\x00\x04\x01\x00\x00\x00")
    c.close()
    pcap = cap.write(tmp_path / "t.pcap")
    rules = tmp_path / "r.yaml"
    rules.write_text("default_action: pass\nrules:\n  - {id: 1, msg: sni, action: alert, tls_sni: tail.example}\n")
    eve = tmp_path / "eve.json"
    cp = subprocess.run([sys.executable, "-m", "appliance", "replay", pcap, "--rules", str(rules), "--eve", str(eve)],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    engine = [e["anomaly"]["event"] for e in events if e["event_type"] == "anomaly"
              and e["anomaly"]["event"].startswith(("engine.", "exception."))]
    assert engine == []
    assert [e["alert"]["signature_id"] for e in events if e["event_type"] == "alert"] == [1]
    stats = [e for e in events if e["event_type"] == "stats"][-1]
    assert stats["stats"]["appliance"]["internal_errors"] == 0

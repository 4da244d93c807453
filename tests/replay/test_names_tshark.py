"""Names as a packet analyser reads them: for every corpus capture, the DNS query names, TLS
SNIs and HTTP hosts the appliance logs (replay, every event type, an empty rule set) equal
what tshark decodes from the same file (lowercase, no trailing dot, an HTTP host without its
port), and so do the JA3 and JA3S strings (tshark's ja3_full/ja3s_full). Each difference
was a bug on one side; the ones left are listed with their reason.
Skips when ../shared/corpus or tshark is absent."""
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from appliance.applayer.http import normalize_host
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveList
from appliance.replay import replay

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
TSHARK = shutil.which("tshark")

# The corpus' own ports: services on ports tshark does not map to them by default.
DECODE_AS = {
    # TLS clients to a server on 8080 (tshark takes 8080 for HTTP alternate)
    "stopddos-packet-captures/amp.dns.RRSIG.fragmented.pcap": ["-d", "tcp.port==8080,tls"],
}
# Captures replayed with other settings, and why.
SETTINGS = {
    # recorded on the client with checksum offload: its segments carry bad TCP checksums,
    # which the receiving kernel (and the appliance by default) discards; tshark does not
    # check them. With the checksums not verified (replay --no-checksums) the names agree.
    "tcpreplay/test/test.pcap": {"verify_checksums": False},
    "tcpreplay/test/test_fragroute.pcap": {"verify_checksums": False},
}
# Names tshark decodes that the appliance does not log, by design.
TSHARK_ONLY = {
    # PPPoE (and L2TP inside it) is not decoded: counted as not inspected (README, replay);
    # an ENI never carries it. The plain-Ethernet HTTP flow of the capture agrees.
    "dpkt/examples/data/nb6-http.pcap": {
        ("dns", "ncdn.nb6dsl.neufbox.neuf.fr"), ("dns", "http.service-ncdn.sfr.net"),
        ("dns", "ipv4.icanhazip.com"), ("dns", "ipv6.icanhazip.com"),
        ("http", "ipv4.icanhazip.com"), ("http", "ipv6.icanhazip.com")},
    # SSDP: HTTP-formatted multicast datagrams over UDP 1900 (tshark's HTTPU); the http log is
    # of HTTP over TCP, as Suricata's. And five TLS connections captured one way (the server's
    # packets only: no ClientHello): the tls log is one event per ClientHello, with its
    # ServerHello's ja3s; tshark decodes the lone ServerHellos
    "stopddos-packet-captures/amp.dns.RRSIG.fragmented.pcap": {
        ("http", "239.255.255.250"),
        ("ja3s", "771,4865,43-51"), ("ja3s", "771,4865,43-51-41"), ("ja3s", "771,4865,41-51-43"),
        ("ja3s", "771,4866,43-51"), ("ja3s", "771,4866,51-43")},
}


def captures():
    if not CORPUS.is_dir():
        return []
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")
                  if p.is_file() and (".pcap" in p.name))


def _norm(name):
    return name.lower().rstrip(".")


def logged(name, rules):
    eve = EveList()
    insp = Inspector(rules, Settings(**SETTINGS.get(name, {})), eve)
    replay([str(CORPUS / name)], insp)
    insp.close()
    out = set()
    for e in eve.events:
        kind = e["event_type"]
        if kind == "dns":
            out |= {("dns", _norm(q["rrname"])) for q in e["dns"].get("queries", [])}
        elif kind == "tls":
            if "sni" in e["tls"]:
                out.add(("tls", _norm(e["tls"]["sni"])))
            out.add(("ja3", e["tls"]["ja3"]["string"]))
            if "ja3s" in e["tls"]:
                out.add(("ja3s", e["tls"]["ja3s"]["string"]))
        elif kind == "http" and "hostname" in e["http"]:
            out.add(("http", _norm(e["http"]["hostname"])))
    return out


def decoded(name):
    cmd = [TSHARK, "-n", "-r", str(CORPUS / name), *DECODE_AS.get(name, []), "-T", "fields",
           "-E", "occurrence=a", "-E", "aggregator=\x1f",
           "-e", "dns.qry.name", "-e", "tls.handshake.extensions_server_name", "-e", "http.host",
           "-e", "tls.handshake.ja3_full", "-e", "tls.handshake.ja3s_full"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    out = set()
    for line in p.stdout.splitlines():
        for kind, col in zip(("dns", "tls", "http", "ja3", "ja3s"), line.split("\t")):
            for v in col.split("\x1f"):
                if v:
                    if kind == "http":
                        v = normalize_host(v.encode()) or ""
                    out.add((kind, v if kind.startswith("ja3") else _norm(v)))
    return out


@pytest.mark.skipif(TSHARK is None or not captures(), reason="tshark or ../shared/corpus absent")
def test_logged_names_equal_tshark_on_every_corpus_capture(tmp_path):
    rules_path = tmp_path / "empty.yaml"
    rules_path.write_text("default_action: pass\nrules: []\n")
    rules = load_rules(str(rules_path))
    names = captures()
    with ThreadPoolExecutor(2) as pool:              # tshark runs while we replay
        theirs = dict(zip(names, pool.map(decoded, names)))
    compared, problems = 0, []
    for name in names:
        ours = logged(name, rules)
        want = theirs[name] - TSHARK_ONLY.get(name, set())
        compared += len(ours | theirs[name])
        if ours != want:
            problems.append((name, sorted(ours - want), sorted(want - ours)))
        assert TSHARK_ONLY.get(name, set()) <= theirs[name], name      # the exceptions still apply
    assert problems == []
    assert compared >= 100                           # the corpus carries names and fingerprints

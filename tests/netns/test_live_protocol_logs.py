"""Live protocol logs: with no rule about names, real clients and servers through the
appliance give dns (query and answer, over UDP and TCP: dig and dnsmasq), tls (curl and
openssl s_server, TLS 1.3 and 1.2: sni, ja3/ja3s/ja4, the version the server chose, the
TLS 1.2 certificate's subject/issuer) and http (curl and
Python's http.server: status, length, content type) events; a drop rule without `log`
emits a blocked alert. Every event is valid against Suricata's EVE schema."""
import json
import os
import subprocess
import sys

import pytest

from datapath import appliances, curl, topology_fixture, wait_for
from test_datapath import servers, url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.netns

dp_topo = topology_fixture("i10lg")        # namespaces of this file's own (servers uses dp_topo)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(os.path.dirname(REPO), "shared", "specs", "suricata-eve-schema.json")

RULES = """\
default_action: pass
rules:
  - {id: 2001, msg: "block tcp 8081", action: drop, proto: tcp, dst_port: 8081}
"""


@pytest.fixture
def appliance(dp_topo, servers, tmp_path):  # noqa: F811
    yield from appliances(dp_topo, tmp_path, RULES)


@pytest.fixture
def answering(dp_topo, tmp_path):
    """dnsmasq (UDP and TCP 53: live.example A 192.0.2.7) and openssl s_server (TLS on 8443,
    a self-signed certificate) in the server namespace."""
    t = dp_topo
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=tls.live.example"],
                   check=True, capture_output=True)
    procs = [
        subprocess.Popen(["ip", "netns", "exec", t.server, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
                          "--no-resolv", "--no-hosts", "--bind-interfaces", f"--listen-address={t.server_ip}",
                          "--address=/live.example/192.0.2.7", f"--pid-file={tmp_path / 'dnsmasq.pid'}",
                          "--user=root"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["ip", "netns", "exec", t.server, "openssl", "s_server", "-accept", "8443",
                          "-cert", str(cert), "-key", str(key), "-www", "-quiet"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL),
    ]
    wait_for(lambda: ":8443 " in t.ex(t.server, "ss", "-ltnH").stdout and ":53 " in t.ex(t.server, "ss", "-ltnH").stdout,
             what="dnsmasq and s_server")
    yield
    for p in procs:
        p.kill()
        p.wait()


def schema_errors(events):
    jsonschema = pytest.importorskip("jsonschema")
    if not os.path.isfile(SCHEMA):
        pytest.skip("EVE schema not present")
    with open(SCHEMA) as f:
        v = jsonschema.Draft202012Validator(json.load(f))
    out = []
    for e in events:
        if e.get("event_type") == "stats":
            e = {**e, "stats": {k: x for k, x in e["stats"].items() if k != "appliance"}}
        out += [f"{e['event_type']}: {list(err.absolute_path)}: {err.message}" for err in v.iter_errors(e)]
    return out


def test_live_dns_tls_http_logs_and_blocked_alert(dp_topo, appliance, answering):
    t = dp_topo
    a = appliance().start()
    # two requests: 200 then 404 (Python's http.server answers HTTP/1.0 and closes)
    r = t.ex(t.client, "curl", "-sS", "-o", "/dev/null", "-o", "/dev/null", "--max-time", "4",
             url(t, 8080), url(t, 8080, "missing"))
    assert r.returncode == 0, r.stderr
    for tcp in ("+notcp", "+tcp"):
        r = t.ex(t.client, "dig", f"@{t.server_ip}", "live.example", "A", tcp, "+tries=1", "+time=3", "+short")
        assert r.stdout.strip() == "192.0.2.7", (tcp, r)
    for version in (("--tlsv1.3",), ("--tlsv1.2", "--tls-max", "1.2")):
        r = t.ex(t.client, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "4", *version,
                 "--resolve", f"tls.live.example:8443:{t.server_ip}", "https://tls.live.example:8443/")
        assert r.stdout == "200", r
    assert curl(t, url(t, 8081), max_time=2).returncode == 28      # dropped

    http = wait_for(lambda: len(a.events("http")) >= 2 and a.events("http"), what="two http events")
    got = sorted((e["http"]["url"], e["http"]["status"], e["http"]["length"]) for e in http)
    assert got == [("/hello", 200, len("hello from the server\n")), ("/missing", 404, got[1][2])]
    assert got[1][2] > 0
    # "hello" has no extension; the 404 page's "; charset=utf-8" is cut, as Suricata does
    assert {e["http"]["http_content_type"] for e in http} == {"application/octet-stream", "text/html"}
    assert all(e["http"]["hostname"] == t.server_ip and e["src_ip"] == t.client_ip for e in http)

    dns = wait_for(lambda: len(a.events("dns")) >= 4 and a.events("dns"), what="dns queries and answers")
    by = sorted((e["proto"], e["dns"]["type"]) for e in dns)
    assert by == [("TCP", "request"), ("TCP", "response"), ("UDP", "request"), ("UDP", "response")]
    for e in dns:
        assert e["dns"]["queries"][0]["rrname"] == "live.example"
        if e["dns"]["type"] == "response":
            assert e["dns"]["rcode"] == "NOERROR"
            assert e["dns"]["answers"] == [{"rrname": "live.example", "rrtype": "A", "ttl": 0, "rdata": "192.0.2.7"}]

    tls = wait_for(lambda: len(a.events("tls")) >= 2 and a.events("tls"), what="two tls events")
    by_version = {e["tls"]["version"]: e["tls"] for e in tls}          # the ServerHello's choice
    assert sorted(by_version) == ["TLS 1.2", "TLS 1.3"]
    for tl in by_version.values():
        assert tl["sni"] == "tls.live.example" and tl["ja3"]["hash"] and tl["ja3s"]["string"].startswith("771,")
    assert by_version["TLS 1.3"]["ja4"].startswith("t13d") and "subject" not in by_version["TLS 1.3"]
    assert by_version["TLS 1.2"]["ja4"].startswith("t12d")
    # TLS 1.2: the certificate in the clear (self-signed: issuer = subject)
    assert by_version["TLS 1.2"]["subject"] == by_version["TLS 1.2"]["issuerdn"] == "CN=tls.live.example"

    alerts = wait_for(lambda: a.events("alert"), what="the blocked alert")
    assert {(e["alert"]["signature_id"], e["alert"]["action"]) for e in alerts} == {(2001, "blocked")}
    assert a.stop() == 0
    assert schema_errors(a.events()) == []

"""Suricata rule syntax -> the keyword mapping the YAML loader reads (one engine).

`action proto src sport direction dst dport (option; option: value; ...)` becomes a
plain dict of YAML keys (id, action, proto, src, ..., content, dns_query) that
keywords.read_rule turns into the same Rule a YAML rule gives. Only what the YAML
keys express with the same meaning is mapped; anything else is an "unsupported
keyword" (the loader fails on it, or skips the rule with --skip-unsupported),
never a silent approximation.
"""
import re
from dataclasses import dataclass, field

from . import suricata_flow as flowopts
from .classification import CLASS_PRIORITY   # a classtype's priority: the severity without `priority`
from .inspect_buffer import BUFFERS, RESPONSE_BUFFERS
from .keywords import parse_name, parse_pcre

ACTION_OF = {"alert": "alert", "pass": "pass", "drop": "drop", "reject": "reject",
             "rejectsrc": "reject", "rejectdst": "reject", "rejectboth": "reject"}
# Suricata's action order: pass rules are evaluated first, then drop, reject, alert (alert
# never decides here, so its place does not matter); across .rules files: loader.in_action_order.
ACTION_RANK = {"pass": 0, "drop": 1, "reject": 2, "alert": 3}
# proto -> (YAML proto, the app field its sticky buffers fill)
# (Suricata's `icmp` is ICMPv4 and ICMPv6 together: no one YAML proto says that, see parse_rule.)
PROTO_OF = {"ip": ("ip", None), "tcp": ("tcp", None), "udp": ("udp", None),
            "icmpv4": ("icmp", None), "icmpv6": ("icmpv6", None),
            "dns": ("ip", "dns"), "tls": ("tcp", "tls"), "http": ("tcp", "http")}
# sticky buffers -> the buffer (YAML content item's `buffer`); they apply to what follows
STICKY = {"dns.query": "dns.query", "dns_query": "dns.query", "tls.sni": "tls.sni", "tls_sni": "tls.sni",
          "http.host": "http.host", "http.uri": "http.uri", "http.uri.raw": "http.uri.raw",
          "http.method": "http.method", "http.user_agent": "http.user_agent", "http.stat_code": "http.stat_code"}
STICKY.update({"file_data": "file_data", "file.data": "file_data"})   # the HTTP body (detect/file_data.py)
# content modifiers (Snort's legacy): apply to the content before them
LEGACY_MODIFIER = {"http_host": "http.host", "http_uri": "http.uri", "http_raw_uri": "http.uri.raw",
                   "http_method": "http.method", "http_user_agent": "http.user_agent",
                   "http_stat_code": "http.stat_code"}
NAME_KEY = {"dns.query": "dns_query", "tls.sni": "tls_sni", "http.host": "http_host"}
CONTENT_MODIFIERS = ("nocase", "depth", "offset", "distance", "within", "startswith", "endswith",
                     "fast_pattern")
FLOW_OF = {"established": "established", "not_established": "not_established",
           "to_server": "to_server", "from_client": "to_server",
           "to_client": "to_client", "from_server": "to_client"}
IGNORED = ("rev", "gid", "reference", "classtype", "msg", "sid", "priority", "metadata")
# Suricata's default address-groups/port-groups (suricata.yaml); rule files and config override.
DEFAULT_VARS = {
    "HTTP_SERVERS": "$HOME_NET", "SMTP_SERVERS": "$HOME_NET", "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET", "TELNET_SERVERS": "$HOME_NET", "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET", "DNP3_SERVER": "$HOME_NET", "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET", "MODBUS_SERVER": "$HOME_NET", "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
    "HTTP_PORTS": "80", "SHELLCODE_PORTS": "!80", "ORACLE_PORTS": "1521", "SSH_PORTS": "22",
    "DNP3_PORTS": "20000", "MODBUS_PORTS": "502", "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21", "GENEVE_PORTS": "6081", "VXLAN_PORTS": "4789", "TEREDO_PORTS": "3544",
}
_HEADER = re.compile(r"\s*(\S+)\s+(\S+)\s+(\S+|\[[^\]]*\])\s+(\S+|\[[^\]]*\])\s+(->|<>)\s+"
                     r"(\S+|\[[^\]]*\])\s+(\S+|\[[^\]]*\])\s*\(")


@dataclass
class Parsed:
    """One rule line read: the YAML-key mapping, or why not."""
    line: int
    mapping: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)      # rev, gid, references: kept on the Rule
    errors: list = field(default_factory=list)     # messages: the rule is wrong
    unsupported: list = field(default_factory=list)  # (keyword, message): cannot be expressed here
    notes: list = field(default_factory=list)      # messages: loaded, but read differently from Suricata
    sid: int | None = None


def read_text(text):
    """Every rule of a .rules file as a Parsed, in Suricata's action order (stable within
    an action). Comments, blank lines and `\\` continuations are handled."""
    out, buf, start = [], "", 0
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if not buf:
            start = n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        out.append(parse_rule(buf, start))
        buf = ""
    if buf:
        out.append(parse_rule(buf, start))
    return sorted(out, key=lambda p: ACTION_RANK.get(p.mapping.get("action"), 3))


def parse_rule(text, line):
    p = Parsed(line)
    m = _HEADER.match(text)
    if not m or not text.rstrip().endswith(")"):
        p.errors.append("not a Suricata rule: expected 'action proto src sport -> dst dport (options;)'")
        return p
    action, proto, src, sport, arrow, dst, dport = m.groups()
    if action not in ACTION_OF:
        p.errors.append(f"unknown action '{action}' (alert, pass, drop, reject, rejectsrc, rejectdst, rejectboth)")
    else:
        p.mapping["action"] = ACTION_OF[action]
        if ACTION_OF[action] in ("drop", "reject"):
            p.mapping["log"] = True        # Suricata's drop/reject rules also alert
    app = None
    if proto == "icmp":
        p.mapping["proto"] = ["icmp", "icmpv6"]    # Suricata's icmp: ICMPv4 and ICMPv6
    elif proto not in PROTO_OF:
        p.unsupported.append((proto, f"unsupported keyword '{proto}' (protocol)"))
    else:
        yproto, app = PROTO_OF[proto]
        if yproto != "ip":
            p.mapping["proto"] = yproto
        elif app == "dns" and (sport, dport) != ("any", "any"):
            p.mapping["proto"] = ["tcp", "udp"]    # DNS runs on both; ports need one of them
    if arrow == "<>" and (src, sport) != (dst, dport):
        p.mapping["bidirectional"] = True          # the header fits either way round
    for key, value in (("src", src), ("dst", dst)):
        if value != "any":
            p.mapping[key] = value
    for key, value in (("src_port", sport), ("dst_port", dport)):
        if value != "any":
            p.mapping[key] = port_spec(value)
    options, msg = split_options(text[m.end():text.rstrip().rfind(")")])
    if msg:
        p.errors.append(msg)
        return p
    _Options(p, app).read(options)
    _orient(p, (src, sport), (dst, dport))
    return p


def _orient(p, left, right):
    """A pass/drop/reject rule here describes the connection (src = its initiator, for every
    packet of the flow); Suricata's header describes each matching packet. They agree when
    the rule only looks at packets to the server (flow:to_server, or a name, which only
    requests carry), and with src/dst swapped when it only looks at packets to the client.
    Otherwise a Suricata drop rule also matches replies: `header: packet` says that."""
    mp = p.mapping
    if mp.get("action") not in ("pass", "drop", "reject") or left == right:
        return
    flow = set(mp.get("flow", ()))
    response = any(isinstance(i, dict) and i.get("buffer") in RESPONSE_BUFFERS for i in mp.get("content", ()))
    if _both_bodies(mp) and not response and not flow & {"to_server", "to_client"}:
        # Suricata reads file_data in both directions, the header against each body's packet:
        # one connection header cannot say that (uploads as written, downloads swapped)
        p.errors.append(f"{mp['action']} rule on file_data with no flow direction: Suricata judges request "
                        "and response bodies, each against its own packet; add flow:to_server (uploads) "
                        "or flow:to_client (downloads), or write one rule of each")
        return
    # a rule on the response (http.stat_code) is judged on the server's packet: its header
    # describes that packet, as with flow:to_client
    if "to_client" in flow or (response and "to_server" not in flow):
        for a, b in (("src", "dst"), ("src_port", "dst_port")):
            va, vb = mp.pop(a, None), mp.pop(b, None)
            if vb is not None:
                mp[a] = vb
            if va is not None:
                mp[b] = va
    elif "to_server" not in flow and not any(k in mp for k in ("dns_query", "tls_sni", "http_host",
                                                                 "bsize", "urilen")) \
            and not any(isinstance(i, dict) and "buffer" in i for i in mp.get("content", ())):
        # (names and sticky buffers are read from requests only: to_server by nature)
        # Suricata matches the header against each packet (replies too): say so
        mp["header"] = "packet"


def _both_bodies(mp):
    """The rule reads file_data (request and response bodies) and nothing that only one
    direction carries (a request buffer, a name, urilen): Suricata gives it both directions."""
    items = [i for i in mp.get("content", ()) if isinstance(i, dict)]
    buffers = {i.get("buffer") for i in items} | set(mp.get("bsize", ()))
    request = buffers - {"file_data", None} - RESPONSE_BUFFERS
    return "file_data" in buffers and not request \
        and not any(k in mp for k in ("dns_query", "tls_sni", "http_host", "urilen"))


def port_spec(value):
    """Suricata port syntax ("1024:", ":1023", "80:90") in the YAML spelling ("a-b")."""
    def one(m):
        lo, hi = m.group(1) or "0", m.group(2) or "65535"
        return f"{lo}-{hi}"
    return re.sub(r"(?<![\w$])(\d*):(\d*)(?![\w])", one, value)


def split_options(body):
    """"msg:\"a;b\"; sid:1;" -> [("msg", "\"a;b\""), ("sid", "1")], honouring quotes and \\ escapes."""
    out, cur, quoted, esc = [], "", False, False
    for ch in body:
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            cur += ch
            esc = True
        elif ch == '"':
            cur += ch
            quoted = not quoted
        elif ch == ";" and not quoted:
            if cur.strip():
                name, sep, value = cur.strip().partition(":")
                out.append((name.strip(), value.strip() if sep else None))
            cur = ""
        else:
            cur += ch
    if quoted:
        return None, "unterminated quoted string in the options"
    if cur.strip():
        return None, f"option '{cur.strip()}' is not ended by ';'"
    return out, None


def unquote(v):
    if v is None or len(v) < 2 or not (v.startswith('"') and v.endswith('"')):
        return v
    return re.sub(r"\\(.)", r"\1", v[1:-1])


def content_bytes(v):
    """A Suricata content string ("a|0d 0a|b") -> bytes, or (None, message)."""
    out, i = bytearray(), 0
    parts = v.split("|")
    if len(parts) % 2 == 0:
        return None, f"content {v!r}: unbalanced '|'"
    for i, part in enumerate(parts):
        if i % 2:
            digits = re.sub(r"\s", "", part)
            if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", digits):
                return None, f"content {v!r}: bad hex between '|'"
            out += bytes.fromhex(digits)
        else:
            out += part.encode("utf-8")
    if not out:
        return None, "content is empty"
    return bytes(out), None


class _Options:
    """Reads the options of one rule into Parsed.mapping."""

    def __init__(self, p, app):
        self.p, self.app = p, app
        self.items = []             # YAML content items in order, each with "buffer" (None = the payload)
        self.buffer = None          # the sticky buffer in force (None = the payload)
        self.bsize = {}             # buffer -> size text
        self.dotprefix = False
        self.seen = set()           # single-value keywords read so far (a repeat is refused)

    def unsupported(self, kw, why=""):
        self.p.unsupported.append((kw, f"unsupported keyword '{kw}'" + (f" ({why})" if why else "")))

    def error(self, msg):
        self.p.errors.append(msg)

    def once(self, name, refused):
        """False (and the rule refused) when `name` came before: here the last one would win
        and quietly change the rule. `refused` says how: error (Suricata refuses it too) or
        unsupported (Suricata ANDs them; one value is all this reader keeps)."""
        if name not in self.seen:
            self.seen.add(name)
            return True
        if refused == "error":
            self.error(f"{name} given twice: Suricata refuses a rule with more than one {name}")
        else:
            self.unsupported(name, "given twice: only one per rule here")
        return False

    def read(self, options):
        p, mp = self.p, self.p.mapping
        for name, value in options:
            bare = value[1:].lstrip() if name in ("content", "uricontent", "pcre") and value \
                and value.startswith("!") else value
            if bare and bare.startswith('"') and (len(bare) < 2 or not bare.endswith('"')):
                self.error(f"{name}: text after the closing quote in {value!r} (a missing ';'?)")
                continue
            v = unquote(value)
            if name == "msg":
                mp["msg"] = v or ""
            elif name == "sid":
                if v and v.isdigit() and int(v) > 0:
                    mp["id"] = p.sid = int(v)
                else:
                    self.error(f"sid must be a positive integer, got {value!r}")
            elif name in ("rev", "gid"):
                if v and v.isdigit():
                    p.extra[name] = int(v)
                else:
                    self.error(f"{name} must be an integer, got {value!r}")
            elif name == "reference":
                p.extra.setdefault("references", []).append(v or "")
            elif name == "classtype":
                mp["classtype"] = v
            elif name == "priority":
                if v and v.isdigit() and 1 <= int(v) <= 4:
                    mp["severity"] = int(v)
                else:
                    self.unsupported("priority", f"{value}: severities here are 1-4")
            elif name == "metadata":
                md = mp.setdefault("metadata", {})
                for item in (v or "").split(","):
                    k, _, val = item.strip().partition(" ")
                    if k:
                        md.setdefault(k, []).append(val.strip())
            elif name in FLOW_OF or name == "flow":
                if self.once("flow", "error"):
                    self.flow(v)
            elif name == "flags":
                mp["tcp_flags"] = v
            elif name in ("itype", "icode"):
                if v and v.isdigit():
                    mp["icmp_type" if name == "itype" else "icmp_code"] = int(v)
                else:
                    self.unsupported(name, f"'{value}': only an exact number is supported")
            elif name in STICKY:
                want = STICKY[name]
                if self.app not in (None, BUFFERS[want]):
                    self.error(f"{name} on a {self.app} rule can never match")
                self.buffer = want
            elif name == "pkt_data":
                self.buffer = None         # back to the packet payload
            elif name == "dotprefix":
                self.dotprefix = True
            elif name == "content":
                self.content(value, self.buffer)
            elif name == "uricontent":
                self.content(value, "http.uri")
            elif name in CONTENT_MODIFIERS:
                self.modifier(name, v)
            elif name == "pcre":
                self.pcre(value)
            elif name == "isdataat":
                self.isdataat(v)
            elif name == "bsize":
                buf = self.current_buffer()
                if buf is None:
                    self.unsupported("bsize", "on the packet payload (Suricata's bsize needs a sticky buffer; "
                                              "dsize is the payload's)")
                else:
                    self.bsize[buf] = v
            elif name in ("dsize", "ttl", "ip_proto", "urilen"):
                if self.once(name, "error" if name == "dsize" else "unsupported"):
                    mp[name] = v
            elif name in LEGACY_MODIFIER:
                last = self.last_content()
                if last is None:
                    self.error(f"{name} needs a content before it")
                else:
                    last["buffer"] = LEGACY_MODIFIER[name]
            elif name in ("threshold", "detection_filter") and self.seen & {"threshold", "detection_filter"} - {name}:
                self.error("threshold and detection_filter in one rule: Suricata refuses it (one of them per rule)")
            elif name == "threshold":
                if self.once("threshold", "error"):
                    self.threshold(v)
            elif name == "detection_filter":
                if self.once("detection_filter", "error"):
                    flowopts.option(self, name, v, value)
            elif name in ("flowbits", "flowint", "noalert", "target", "bypass", "prefilter"):
                flowopts.option(self, name, v, value)
            else:
                self.unsupported(name)
        if "id" not in mp and not p.errors:
            self.error("rule has no sid")
        if "severity" not in mp and mp.get("classtype") in CLASS_PRIORITY:
            mp["severity"] = CLASS_PRIORITY[mp["classtype"]]
        self.finish()
        flowopts.finish(self.p)
        flowopts.stream_check(self)
        flowopts.payload_default(self)

    def flow(self, v):
        out = []
        for item in (v or "").split(","):
            item = item.strip()
            if item in FLOW_OF:
                out.append(FLOW_OF[item])
            elif item in flowopts.NO_CONDITION:
                pass                       # what every rule here does already (flowopts.NO_CONDITION)
            elif item in flowopts.PAYLOAD_OF:
                self.p.mapping["payload"] = flowopts.PAYLOAD_OF[item]   # content on the stream or packets
            else:
                self.unsupported(f"flow:{item}")
        if out:
            self.p.mapping["flow"] = out

    def current_buffer(self):
        """The buffer bsize/isdataat apply to: the sticky buffer in force, else the last
        content's (a legacy modifier moved it)."""
        if self.buffer is not None:
            return self.buffer
        return self.items[-1]["buffer"] if self.items else None

    def last_content(self):
        for item in reversed(self.items):
            if "hex" in item:
                return item
        return None

    def content(self, value, buffer):
        negated = value is not None and value.startswith("!")
        raw = unquote(value[1:].strip() if negated else value)
        if raw is None or raw == value and not (value or "").startswith('"') and not negated:
            self.error(f"content must be a quoted string, got {value!r}")
            return
        data, msg = content_bytes(raw)
        if msg:
            self.error(msg)
            return
        item = {"hex": data.hex(), "buffer": buffer}
        if negated:
            item["not"] = True
        self.items.append(item)

    def modifier(self, name, v):
        last = self.last_content()         # as Suricata: the last content, even past a pcre
        if last is None:
            self.error(f"{name} needs a content before it")
            return
        if name in ("depth", "offset", "distance", "within"):
            if not v or not re.fullmatch(r"-?\d+", v.strip()):
                self.unsupported(name, f"'{v}': only a number is supported (not a byte_extract variable)")
                return
            if name in last:
                self.error(f"{name} given twice for content {bytes.fromhex(last['hex'])!r}: Suricata refuses "
                           f"the rule")
                return
            last[name] = int(v)
        else:
            last[name] = True          # fast_pattern's "only" / "offset,length" forms: the same hint

    def pcre(self, value):
        negated = value is not None and value.startswith("!")
        quoted = (value[1:].strip() if negated else value) or ""
        # a regex keeps its backslashes ("\/", "\d"): only the quotes come off
        raw = quoted[1:-1] if len(quoted) >= 2 and quoted[0] == quoted[-1] == '"' else None
        if not raw or not (value or "").lstrip("!").strip().startswith('"') \
                or not re.fullmatch(r"/.*/[A-Za-z]*", raw, re.S):
            self.error(f"pcre must be a quoted \"/regex/flags\", got {raw or value!r}")
            return
        pcre_item, flag_buffer, msg = parse_pcre(raw)
        if msg:
            self.unsupported("pcre", msg)
            return
        if flag_buffer is not None and self.buffer not in (None, flag_buffer):
            self.error(f"pcre {raw!r}: its flag names {flag_buffer} inside the {self.buffer} buffer")
            return
        item = {"pcre": raw, "buffer": self.buffer or flag_buffer}
        if pcre_item.relative and not any(("hex" in it or "pcre" in it) and it["buffer"] == item["buffer"]
                                          for it in self.items):
            # Suricata refuses it too; here it would search the whole buffer from its start
            self.error(f"pcre {raw!r}: /R (relative) needs a content or pcre before it in the same "
                       f"buffer ({item['buffer'] or 'the payload'})")
            return
        if negated:
            item["not"] = True
        self.items.append(item)

    def isdataat(self, v):
        text = (v or "").strip()
        negated = text.startswith("!")
        n, _, rel = text.lstrip("!").partition(",")
        if not n.strip().isdigit() or rel.strip() not in ("", "relative"):
            self.unsupported("isdataat", f"'{v}': only a number, optionally ',relative'")
            return
        item = {"isdataat": int(n), "buffer": self.current_buffer() if rel.strip() else self.buffer}
        if rel.strip():
            item["relative"] = True
        if negated:
            item["not"] = True
        self.items.append(item)

    def threshold(self, v):
        parts = {}
        for item in (v or "").split(","):
            k, _, val = item.strip().partition(" ")
            parts[k] = val.strip()
        if parts.get("track") not in ("by_src", "by_dst", "by_rule", "by_flow"):
            self.unsupported("threshold", f"track {parts.get('track')!r}")
            return
        try:
            self.p.mapping["threshold"] = {"type": parts.get("type"), "track": parts["track"],
                                           "count": int(parts.get("count", "")),
                                           "seconds": int(parts.get("seconds", ""))}
        except ValueError:
            self.error(f"threshold '{v}': count and seconds must be integers")

    def finish(self):
        """Content items -> `content` (payload and sticky-buffer steps); a lone content that
        names a whole name (or "*.suffix") on dns.query/tls.sni/http.host -> the name key,
        the fast path; bsize -> `bsize`."""
        mp = self.p.mapping
        for buffer, key in NAME_KEY.items():
            mine = [it for it in self.items if it["buffer"] == buffer]
            if len(mine) != 1 or "hex" not in mine[0]:
                continue
            names = self.name_of(buffer, mine[0], self.bsize.get(buffer))
            if names is not None:
                mp[key] = names
                self.items.remove(mine[0])
                if self.bsize.get(buffer) == str(len(bytes.fromhex(mine[0]["hex"]))):
                    del self.bsize[buffer]
        if self.dotprefix:
            self.unsupported("dotprefix", "only with one \".suffix\" content and endswith on a name buffer")
        out = []
        for it in self.items:
            it = dict(it)
            if it.get("buffer") is None:
                it.pop("buffer")
            if it.get("buffer") == "http.host" and "hex" in it and not it.get("nocase"):
                data = bytes.fromhex(it["hex"])
                if data != data.lower():
                    self.error(f"http.host is lowercase: content {data.decode('latin-1')!r} can never "
                               f"match (add nocase)")
            out.append(it)
        if out:
            mp["content"] = out
        if self.bsize:
            mp["bsize"] = dict(self.bsize)
        if self.app and not any(k in mp for k in ("dns_query", "tls_sni", "http_host", "bsize", "urilen")) \
                and not any("buffer" in it for it in out):
            mp["app_proto"] = self.app      # `alert tls ...` with no sticky buffer: the protocol alone

    def name_of(self, buffer, item, bsize):
        """The name key's values a lone content on a name buffer means exactly, or None when
        it means something else (a substring, a case-sensitive name: then it stays a
        program on the buffer). YAML names compare case-insensitively and whole."""
        if any(k in item for k in ("not", "offset", "depth", "distance", "within")):
            return None
        data = bytes.fromhex(item["hex"])
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            return None
        # Suricata lowercases http.host (its contents compare as lowercase anyway), but
        # compares dns.query/tls.sni as sent: only nocase contents there are names.
        if buffer == "http.host":
            if text != text.lower() and not item.get("nocase"):
                return None                    # reported by finish: it never matches
        elif not item.get("nocase"):
            return None
        if "*" in text or text != text.strip():
            # a content has no wildcards ('*.good.example' is that literal) and keeps its spaces
            return None
        starts, ends = item.get("startswith"), item.get("endswith")
        whole = (starts and ends and bsize is None) or (bsize == str(len(data)) and not starts and not ends)
        if whole and not self.dotprefix:
            # what is no valid name (a space, a NUL, a long label) stays a program on the buffer
            return [text] if parse_name(text)[1] is None else None
        if ends and not starts and bsize is None and text.startswith(".") and len(text) > 1 \
                and parse_name("*" + text)[1] is None:
            # ".example.com" at the end: any subdomain; with dotprefix the name itself too
            names = ([text[1:]] if self.dotprefix else []) + ["*" + text]
            self.dotprefix = False
            return names
        return None

"""JSON Schema (draft 2020-12) of the rule file format.

For editors (yaml-language-server shows the descriptions and flags unknown keys) and
for other tools. The loader stays the authority: it checks what a schema cannot
(CIDR syntax, var references, duplicate ids, proto-dependent keys).
"""
from .loader import THRESHOLD_KEYS, THRESHOLD_TRACKS, THRESHOLD_TYPES
from .rule import ACTIONS, DECISIONS, DIRECTIONS, FLOW_KEYWORDS, PROTOS

SCHEMA_ID = "https://github.com/appliance/rules.schema.json"


def _set_of(desc, scalar):
    """A scalar, or a list of scalars."""
    return {"description": desc, "anyOf": [scalar, {"type": "array", "minItems": 1, "items": scalar}]}


def rule_schema() -> dict:
    """The rule file format as a JSON Schema dict."""
    addr = {"type": "string", "minLength": 1,
            "description": "IP address, CIDR (host bits are cleared), any, $VAR, or \"!\" before any of "
                           "these; a quoted \"[a, !b]\" list is also accepted"}
    port = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 65535},
                      {"type": "string", "minLength": 1}],
            "description": "port 0-65535, \"a-b\" range, any, $VAR, or \"!\" before any of these"}
    name = {"type": "string", "minLength": 1, "pattern": r"^\S+$",
            "description": "exact name (case-insensitive, trailing dot ignored) or \"*.suffix\" for any subdomain"}

    def names(field):
        return {"description": f"{field}: the rule matches when any of these names matches",
                "anyOf": [name, {"type": "array", "minItems": 1, "items": name}]}

    content_map = {
        "type": "object", "additionalProperties": False,
        "description": "content with options; exactly one of value or hex",
        "properties": {
            "value": {"type": "string", "minLength": 1, "description": "literal text (UTF-8), taken as is"},
            "hex": {"type": "string", "minLength": 1,
                    "description": "bytes as hex digits; spaces and | are ignored: \"0d 0a\", \"|de ad|\""},
            "nocase": {"type": "boolean", "description": "match ASCII letters case-insensitively"},
            "offset": {"type": "integer", "minimum": 0,
                       "description": "the match starts at or after this payload offset"},
            "depth": {"type": "integer", "minimum": 1,
                      "description": "the match ends within offset+depth bytes of the payload"},
        },
        "oneOf": [{"required": ["value"]}, {"required": ["hex"]}],
    }
    content_item = {"anyOf": [{"type": "string", "minLength": 1, "description": "literal text (UTF-8)"},
                              content_map]}

    rule = {
        "type": "object", "additionalProperties": False, "required": ["id", "action"],
        "description": "one rule; header keys select packets by address/port, the rest add conditions",
        "properties": {
            "id": {"type": "integer", "minimum": 1,
                   "description": "unique positive integer across all rule files; alert.signature_id"},
            "msg": {"type": "string", "description": "what the rule means; alert.signature (recommended)"},
            "action": {"enum": list(ACTIONS),
                       "description": "pass/drop/reject: the first matching one decides the flow's verdict; "
                                      "alert: emit an alert, never decides"},
            "proto": {"enum": list(PROTOS), "default": "ip", "description": "IP protocol; ip = any"},
            "src": {**_set_of("source addresses", addr), "default": "any"},
            "src_port": {**_set_of("source ports (proto tcp or udp only)", port), "default": "any"},
            "dst": {**_set_of("destination addresses", addr), "default": "any"},
            "dst_port": {**_set_of("destination ports (proto tcp or udp only)", port), "default": "any"},
            "direction": {"enum": list(DIRECTIONS), "default": "any",
                          "description": "inbound: flow initiated from outside HOME_NET (replay) or arriving on "
                                         "the outside interface (live); outbound: the reverse"},
            "flow": {"description": "flow state/direction conditions; all listed must hold",
                     "anyOf": [{"enum": list(FLOW_KEYWORDS)},
                               {"type": "array", "minItems": 1, "uniqueItems": True,
                                "items": {"enum": list(FLOW_KEYWORDS)}}]},
            "tcp_flags": {"type": "string", "pattern": r"^\s*(0|[FSRPAUECfsrpauec]+)\+?\s*(,\s*[FSRPAUECfsrpauec]+)?\s*$",
                          "description": "Suricata-style flags over FSRPAUEC: \"S\" exactly SYN, \"S+\" SYN "
                                         "and maybe others, \"0\" none; \",CE\" flags to ignore (proto tcp)"},
            "icmp_type": {"type": "integer", "minimum": 0, "maximum": 255,
                          "description": "ICMP/ICMPv6 type (proto icmp or icmpv6)"},
            "icmp_code": {"type": "integer", "minimum": 0, "maximum": 255,
                          "description": "ICMP/ICMPv6 code (proto icmp or icmpv6)"},
            "content": {"description": "bytes the payload must contain; a list: all must match",
                        "anyOf": [content_item, {"type": "array", "minItems": 1, "items": content_item}]},
            "regex": {"type": "string", "minLength": 1,
                      "description": "Python regular expression searched in the payload bytes; inline flags "
                                     "like (?i) allowed"},
            "dns_query": names("DNS query name"),
            "tls_sni": names("TLS ClientHello server name (proto tcp or ip)"),
            "http_host": names("HTTP Host header (proto tcp or ip)"),
            "threshold": {
                "type": "object", "additionalProperties": False, "required": list(THRESHOLD_KEYS),
                "description": "limit how often the rule alerts",
                "properties": {
                    "type": {"enum": list(THRESHOLD_TYPES),
                             "description": "limit: first count per period; threshold: every count-th; "
                                            "both: once per period after count matches"},
                    "track": {"enum": list(THRESHOLD_TRACKS), "description": "what the counters are kept per"},
                    "count": {"type": "integer", "minimum": 1, "description": "matches counted"},
                    "seconds": {"type": "integer", "minimum": 1, "description": "the period"},
                },
            },
            "log": {"type": "boolean", "default": False,
                    "description": "pass/drop/reject rules: also emit an alert event when the rule decides"},
            "severity": {"type": "integer", "minimum": 1, "maximum": 4, "default": 3,
                         "description": "1 (high) to 4 (low); alert.severity"},
            "classtype": {"type": "string", "minLength": 1, "description": "alert.category"},
            "metadata": {"type": "object", "description": "free-form; alert.metadata",
                         "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        },
    }
    var_value = {"anyOf": [{"type": ["string", "integer"]},
                           {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/var_item"}}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "appliance rule file",
        "description": "Rules for the inline firewall/IDS appliance; see docs/rules.md",
        "type": "object",
        "additionalProperties": False,
        "$defs": {
            "var_item": {"anyOf": [{"type": ["string", "integer"]},
                                   {"type": "array", "items": {"$ref": "#/$defs/var_item"}}]},
            "rule": rule,
        },
        "properties": {
            "vars": {
                "type": "object",
                "description": "named address or port sets, used as $NAME; HOME_NET defaults to "
                               "10/8, 172.16/12, 192.168/16, fc00::/7 and EXTERNAL_NET to !$HOME_NET",
                "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                "additionalProperties": {**var_value, "description": "address/CIDR/port/range, $VAR, "
                                                                     "\"!\" negation, or a list of them"},
            },
            "default_action": {"enum": list(DECISIONS), "default": "pass",
                               "description": "verdict for flows no pass/drop/reject rule matched; set once"},
            "rules": {"type": ["array", "null"], "description": "rules, evaluated in order",
                      "items": {"$ref": "#/$defs/rule"}},
        },
    }

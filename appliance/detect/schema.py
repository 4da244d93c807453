"""JSON Schema (draft 2020-12) of the rule file format.

For editors (yaml-language-server shows the descriptions and flags unknown keys) and
for other tools. The loader stays the authority: it checks what a schema cannot
(CIDR syntax, var references, duplicate ids, proto-dependent keys).
"""
import copy

from .keywords import KEYWORDS
from .rule import DECISIONS

SCHEMA_ID = "https://github.com/appliance/rules.schema.json"


def rule_schema() -> dict:
    """The rule file format as a JSON Schema dict; a rule's keys come from the keyword table."""
    rule = {
        "type": "object", "additionalProperties": False,
        "required": [k.name for k in KEYWORDS if k.missing],
        "description": "one rule; header keys select packets by address/port, the rest add conditions",
        "properties": {k.name: copy.deepcopy(k.schema) for k in KEYWORDS},   # callers may edit theirs
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
            "mode": {"enum": ["enforce", "monitor"], "default": "enforce",
                     "description": "monitor: this file's drop/reject rules pass the traffic and alert "
                                    "with action allowed and metadata.monitor would_drop/would_reject"},
            "rules": {"type": ["array", "null"], "description": "rules, evaluated in order",
                      "items": {"$ref": "#/$defs/rule"}},
        },
    }

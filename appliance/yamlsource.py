"""YAML that remembers where things were written, for "FILE:LINE: message" errors.

Mappings load as `LineDict` and sequences as `LineList`; both carry `.line`
(1-based line of the node) and `.lines` (line of each key / item). Scalars are
plain Python values. Only safe YAML types are constructed.
"""
import yaml


class LineDict(dict):
    line = 0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines = {}

    def line_of(self, key):
        return self.lines.get(key, self.line) or 1     # never line 0, even for a made-up mapping


class LineList(list):
    line = 0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines = []

    def line_of(self, index):
        return (self.lines[index] if 0 <= index < len(self.lines) else self.line) or 1


class YamlError(Exception):
    """A file that is not valid YAML; str() is "FILE:LINE: message"."""


# Aliases share one node, but everything that reads the loaded document (variable
# expansion, rule checks) walks it as a tree: 9 aliases of 9 aliases ... ("billion laughs",
# 500 bytes) are 9^9 values to them. A document is refused when its aliases add more values
# than this to the tree; real rule files and configs repeat a few hundred at most.
MAX_ALIAS_VALUES = 100_000


def _check_expansion(root):
    """Raise ConstructorError at the collection whose aliases push the tree past the
    bound. Sizes are memoised per node: linear in the number of distinct nodes."""
    sizes = {}
    added = 0

    def size(node):
        nonlocal added
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [c for pair in node.value for c in pair]
        else:
            return 1
        sizes[id(node)] = 1            # a recursive alias (a node inside itself) counts once
        n = 1
        for child in children:
            seen = sizes.get(id(child))
            if seen is None:
                n += size(child)
                continue
            n += seen                  # an alias: its whole subtree again
            added += seen
            if added > MAX_ALIAS_VALUES:
                raise yaml.constructor.ConstructorError(
                    None, None, f"aliases expand to more than {MAX_ALIAS_VALUES:,} values "
                    "(an alias bomb?)", node.start_mark)
        sizes[id(node)] = n
        return n

    if root is not None:
        size(root)


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader, node):
    out = LineDict()
    out.line = node.start_mark.line + 1
    loader.flatten_mapping(node)
    for knode, vnode in node.value:
        key = loader.construct_object(knode, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "unhashable key", knode.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", knode.start_mark)
        out[key] = loader.construct_object(vnode, deep=True)
        out.lines[key] = knode.start_mark.line + 1
    return out


def _sequence(loader, node):
    out = LineList(loader.construct_object(n, deep=True) for n in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [n.start_mark.line + 1 for n in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def loads(text, filename="<string>"):
    """Parse YAML text; raises YamlError("FILE:LINE: message")."""
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            _check_expansion(root)
            return loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        msg = e.problem or e.context or "invalid YAML"
        raise YamlError(f"{filename}:{line}: {msg}") from None
    except yaml.YAMLError as e:
        raise YamlError(f"{filename}:1: {e}") from None


def load(path):
    """Read and parse a YAML file; raises YamlError for unreadable or invalid files."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise YamlError(f"{path}:1: cannot read: {e}") from None
    return loads(text, str(path))

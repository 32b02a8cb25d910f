"""Checks on a YAML config before it is loaded: no duplicate keys (YAML would silently keep the last), and
no alias bomb (a few lines of anchors and aliases that expand to billions of nodes once anything walks
the data: the composed node graph is measured, counting each alias as what it expands to)."""

from __future__ import annotations

import yaml

from polyhead.errors import ConfigError

# Nodes a config may expand to: real configs have hundreds; an alias bomb has billions.
MAX_NODES = 100_000


def check_yaml(text: str, source: str) -> None:
    """Raise ConfigError for duplicate mapping keys or a document that expands beyond ``MAX_NODES``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return  # the loader reports it with its line
    if root is None:
        return
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        """Nodes under ``node`` with every alias expanded (memoised per node: cheap even for a bomb)."""
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # a (recursive) alias back to a node being measured
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        raise ConfigError(
                            f"{source}:{line}: duplicate key '{key.value}' (first on line {seen[key.value]}); "
                            "YAML would keep only the last one: remove one of them"
                        )
                    seen[key.value] = line
                total += size(key) + size(value)
        sizes[id(node)] = total
        if total > MAX_NODES:
            raise ConfigError(
                f"{source}:{node.start_mark.line + 1}: the YAML expands to more than {MAX_NODES:,} values through "
                "anchors and aliases (an alias bomb?); write the config out without such nesting"
            )
        return total

    size(root)

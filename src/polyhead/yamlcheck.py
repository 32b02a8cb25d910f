"""Checks on a YAML config before it is loaded: no duplicate keys (YAML would silently keep the last), and
no alias bomb (a few lines of anchors and aliases that expand to billions of nodes once anything walks
the data: the composed node graph is measured, counting each alias as what it expands to)."""

from __future__ import annotations

from typing import Any

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


# --------------------------------------------- the config loader's YAML helpers (polyhead.config.load_config)
def parse_override(item: str) -> tuple[list[str], Any]:
    """'training.optimizer.lr=3e-5' -> (['training', 'optimizer', 'lr'], 3e-05); values parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.epochs=1")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.problem})") from exc
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        if not isinstance(node.get(part, {}), dict):
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a section")
        node = node.setdefault(part, {})
    node[path[-1]] = value


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Line number (1-based) of every mapping key in a YAML document, by key path."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = (*prefix, str(key.value))
                lines[path] = key.start_mark.line + 1
                walk(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*prefix, str(i))] = item.start_mark.line + 1
                walk(item, (*prefix, str(i)))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def number_or_text(value: Any) -> Any:
    """A string that spells a number (YAML 1.1 reads ``1e3``, without a dot, as a string) as that float;
    anything else as it was."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value

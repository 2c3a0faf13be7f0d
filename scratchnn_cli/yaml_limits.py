"""YAML files read within limits: hostile input is refused at once instead of eating memory or
stack. Specs (config/), a sweep's sweep.yaml and a run's config.yaml are all read through here.

PyYAML's safe loader builds no objects beyond plain data, but it does not bound their size:

- an alias bomb ("billion laughs": ``a: &a [x, x, ...]``, ``b: &b [*a, *a, ...]``, nine levels
  deep) is a few hundred bytes that every later consumer (validation, copies, dumps) walks as
  ~1e9 values: it is refused by counting the values the document expands to, each use of an
  alias counted as the copy it stands for;
- a list nested thousands deep (``[[[[...]]]]``) overflows the composer's recursion (a
  RecursionError): the nesting is refused past :data:`MAX_YAML_DEPTH`, while composing;
- a collection holding itself (``&a [*a]``) is endless once expanded: refused too.

Both checks run on the composed node graph, before any Python object is built; an alias points
at the node it names, so counting with a memo costs one visit per distinct node.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from scratchnn_cli.errors import ConfigError

#: the deepest nesting of collections (and the scalars in them) accepted. A spec nests about six
#: levels (``model.layers[0].kernel[1]``, a sweep grid's list of ``model.struct`` lists); 50 leaves
#: ample room, and keeps every recursive consumer (the composer, pydantic, ``copy.deepcopy``) far
#: from Python's recursion limit.
MAX_YAML_DEPTH = 50

#: the most values (scalars and collections) a document may expand to. A spec has tens of values,
#: a sweep grid at most some thousands; 100,000 leaves room for any written spec, while an alias
#: bomb (millions to billions of values from a few hundred bytes) is refused before it is built.
MAX_YAML_VALUES = 100_000


class YAMLLimitError(yaml.YAMLError):
    """A document beyond :data:`MAX_YAML_DEPTH` or :data:`MAX_YAML_VALUES`; ``problem`` says
    which, as a predicate ("is nested deeper than 50 levels": callers put the subject, "the
    YAML document", "the value"), ``mark`` where (the node's line and column, or None)."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mark = mark


def too_deep(mark: yaml.Mark | None) -> YAMLLimitError:
    """The error for a document nested deeper than :data:`MAX_YAML_DEPTH`."""
    return YAMLLimitError(f"is nested deeper than {MAX_YAML_DEPTH} levels", mark)


class BoundedSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents beyond :data:`MAX_YAML_DEPTH` levels or
    :data:`MAX_YAML_VALUES` values (aliases expanded) with a :class:`YAMLLimitError`."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose one node, refusing it past the depth limit (the composer recurses once per
        level, so a 5,000-deep list would otherwise end in a RecursionError)."""
        if self._depth >= MAX_YAML_DEPTH:
            raise too_deep(self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        """The document's node graph, checked by :func:`check_expansion` before it is built."""
        node = super().get_single_node()
        if node is not None:
            check_expansion(node)
        return node


def check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that expands (aliases copied out) beyond :data:`MAX_YAML_VALUES`
    values or :data:`MAX_YAML_DEPTH` levels, or that holds itself through an alias.

    Each distinct node is visited once: its expanded size and height are remembered, so a use
    of an alias costs a look-up, and the recursion never goes deeper than the depth limit."""
    known: dict[int, tuple[int, int]] = {}  # id(node) -> (values once expanded, height)
    open_nodes: set[int] = set()  # the collections being visited: an alias to one is a loop

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in open_nodes:
            raise YAMLLimitError(
                "holds itself (an alias *name refers to a collection that contains it)",
                node.start_mark,
            )
        if key not in known:
            if depth >= MAX_YAML_DEPTH:
                raise too_deep(node.start_mark)
            open_nodes.add(key)
            values, height = 1, 0
            for child in _children(node):
                child_values, child_height = visit(child, depth + 1)
                values += child_values
                height = max(height, child_height)
                if values > MAX_YAML_VALUES:
                    raise YAMLLimitError(
                        f"expands to more than {MAX_YAML_VALUES:,} values (each use of an alias "
                        "*name counted as a copy): a spec needs far fewer",
                        node.start_mark,
                    )
            open_nodes.discard(key)
            known[key] = (values, height + 1)
        values, height = known[key]
        if depth + height > MAX_YAML_DEPTH:  # an alias placed deep down
            raise too_deep(node.start_mark)
        return values, height

    visit(root, 0)


def _children(node: yaml.Node) -> list[yaml.Node]:
    """The nodes directly inside ``node``: a mapping's keys and values, a sequence's items."""
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def bounded_safe_load(text: str) -> Any:
    """``yaml.safe_load(text)`` within the limits (:class:`YAMLLimitError` beyond them): for
    YAML read from anywhere a user can write (a spec, a ``--set`` value, a run's files)."""
    return yaml.load(text, Loader=BoundedSafeLoader)  # noqa: S506 (a SafeLoader)


#: the largest spec file read. The shipped specs are 1-3 KB and a sweep's grid adds a few KB;
#: 1 MiB is hundreds of times that and still parses in seconds, while /dev/zero, a huge log
#: given by mistake or an endless file is refused before it fills memory.
MAX_CONFIG_BYTES = 1 << 20


def read_spec_text(path: Path) -> str:
    """The text of the spec file ``path``: a regular file of at most :data:`MAX_CONFIG_BYTES`
    (checked before it is opened: opening a FIFO would wait for a writer, reading /dev/zero
    would never end), UTF-8. Every problem is one :class:`ConfigError` line naming the file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"config {path} is {_file_kind(info.st_mode)}, not a regular file: "
            "give the path of a YAML spec"
        )
    too_big = ConfigError(
        f"config {path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB: a YAML spec is a few KB; "
        "is this the right file?"
    )
    if info.st_size > MAX_CONFIG_BYTES:
        raise too_big
    try:
        with path.open(encoding="utf-8") as f:
            text = f.read(MAX_CONFIG_BYTES + 1)  # a file may grow, or report size 0 (/proc)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise too_big
    return text


def _file_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words: 'a directory', 'a FIFO (named
    pipe)', ..."""
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")

"""YAML that remembers where each key was written, so that a mistake can name its line."""

from pathlib import Path

import yaml


class LineDict(dict):
    """A mapping read from YAML; ``line(key)`` is the 1-based line the key was written on."""

    lines: dict

    def line(self, key) -> int | None:
        return getattr(self, "lines", {}).get(key)


# libyaml's parser when PyYAML has it (about 10x faster: 340 contributors in 0.3 s, not 2.8 s);
# its nodes carry the same marks, so lines are still known.
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    mapping = LineDict()
    mapping.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


class SourceError(ValueError):
    """A mistake in a file the ministry writes (deployment, contributors, profile), with its place."""

    def __init__(self, path: Path | str, line: int | None, message: str):
        self.path, self.line = str(path), line
        super().__init__(f"{self.where}: {message}")

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


class ReferenceDataError(ValueError):
    """Reference data (ministry files) that break their contract: fix the file, then reload."""


def load_yaml(path: Path) -> LineDict:
    """Read a YAML file whose mappings know their lines; a syntax error names its line."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise SourceError(path, mark.line + 1 if mark else None, str(exc.problem)) from exc
    except OSError as exc:
        raise SourceError(path, None, f"cannot be read ({exc.strerror})") from exc
    if data is None:
        return LineDict()
    if not isinstance(data, dict):
        raise SourceError(path, 1, "must be a mapping of keys to values")
    return data

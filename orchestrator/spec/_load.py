"""Reading specs and base configs from YAML: the YAML loader, relative `trainer.base` paths, `SpecError`s."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.errors import SpecError
from orchestrator.spec._messages import format_errors
from orchestrator.spec._sweep import SweepSpec
from orchestrator.spec._trainer import check_override_key


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads `1e-6` as a number (YAML 1.1 wants `1.0e-6`; people write `1e-6`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> Any:
    """Return the YAML document in `path` (numbers like `1e-6` read as floats); raise `SpecError` if malformed."""
    try:
        return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: malformed YAML: {where}{problem}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a text file ({exc.reason})") from None


def load_spec(path: str | Path) -> SweepSpec:
    """Load and validate a sweep spec from a YAML file.

    Relative paths inside the spec (trainer.base) are resolved against the spec file's folder.

    Raises:
        SpecError: one line per problem, each naming the file, the field path, what is allowed and what was given.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a YAML mapping with name, trainer, factors, budget (got {type(data).__name__})")
    return parse_spec(data, source=str(path), base_dir=path.parent)


def parse_spec(
    data: dict[str, Any], *, source: str = "<spec>", base_dir: Path | None = None, resolve_base: bool = True
) -> SweepSpec:
    """Validate a spec given as a mapping; `base_dir` resolves relative paths. Raises `SpecError`.

    `resolve_base=False` leaves `trainer.base` as written (for reading back a spec whose base is not needed).
    """
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError("\n".join(f"{source}: {line}" for line in format_errors(exc))) from None
    if spec.trainer.base is not None and resolve_base:
        base = spec.trainer.base
        if not base.is_absolute():
            base = ((base_dir or Path.cwd()) / base).resolve()
        if not base.is_file():
            raise SpecError(f"{source}: trainer.base: no such file {base}")
        trainer = spec.trainer.model_copy(update={"base": base})
        spec = spec.model_copy(update={"trainer": trainer})
    return spec


def load_base_overrides(path: Path) -> dict[str, Any]:
    """Return the flat `dotted.key: value` overrides of a base config file (nested mappings are flattened)."""
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a base config is a mapping of override keys to values")
    flat: dict[str, Any] = {}
    _flatten("", data, flat)
    for key in flat:
        try:
            check_override_key(key)
        except ValueError as exc:
            raise SpecError(f"{path}: {exc}") from None
    return flat


def _flatten(prefix: str, node: dict[str, Any], out: dict[str, Any]) -> None:
    for key, value in node.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten(f"{full}.", value, out)
        else:
            out[full] = value

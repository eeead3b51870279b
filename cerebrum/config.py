"""Configuration shared by both services: environment (and ``.env``) → frozen attrs class.

Each field ``foo_bar`` of a config class is read from ``CEREBRUM_FOO_BAR``.
Values arrive as strings and are structured by cattrs, so a bad value is a
clear startup error naming the variable, not a crash deep inside the service.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs

ENV_PREFIX = "CEREBRUM_"

_T = TypeVar("_T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false), got {value!r}")


def _structure_str_tuple(value: Any, _: type) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return tuple(str(item) for item in value)


def _structure_optional_path(value: Any, _: type) -> Path | None:
    if value is None or str(value).strip() == "":
        return None
    return Path(str(value)).expanduser()


def _structure_optional_str(value: Any, _: type) -> str | None:
    if value is None or str(value) == "":
        return None
    return str(value)


_converter = cattrs.Converter(forbid_extra_keys=True)
_converter.register_structure_hook(bool, _structure_bool)
_converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_str_tuple)
_converter.register_structure_hook(Path | None, _structure_optional_path)
_converter.register_structure_hook(str | None, _structure_optional_str)


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=VALUE`` lines, ``#`` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def environment(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> dict[str, str]:
    """The effective environment: ``.env`` values overridden by the real environment."""
    merged = read_dotenv(dotenv) if dotenv is not None else {}
    merged.update(os.environ if environ is None else environ)
    return merged


def program_name(module: str) -> str | None:
    """A service's name for its usage lines: ``python -m MODULE`` when started that
    way (argparse would say ``__main__.py``), else None: argparse's own choice."""
    return f"python -m {module}" if Path(sys.argv[0]).name == "__main__.py" else None


def env_name(field: str) -> str:
    """The environment variable that sets config field ``field``."""
    return ENV_PREFIX + field.upper()


def load_config(cls: type[_T], environ: Mapping[str, str], **overrides: Any) -> _T:
    """Build config class ``cls`` from ``CEREBRUM_*`` variables, then ``overrides``.

    Raises ConfigError naming the offending variable.
    """
    raw: dict[str, Any] = {}
    for field in attrs.fields(cls):  # type: ignore[arg-type]
        name = env_name(field.name)
        if name in environ:
            raw[field.name] = environ[name]
            if (field.type in (tuple[str, ...], "tuple[str, ...]") and environ[name].strip()
                    and not _structure_str_tuple(environ[name], tuple)):
                # " , " must not silently mean "none" (for client keys: an open service).
                raise ConfigError(f"invalid configuration: {name} is set but lists nothing")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return _converter.structure(raw, cls)
    except cattrs.BaseValidationError as exc:
        problems = []
        for field, error in validation_problems(exc):
            # Without a field (a check across fields), the message names its variables.
            problems.append(f"{env_name(field)}: {error}" if field else str(error))
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


def validation_problems(exc: BaseException) -> list[tuple[str | None, BaseException]]:
    """Flatten a cattrs exception group into (field name, error) pairs (the name None
    where cattrs does not say, e.g. for extra keys)."""
    found: list[tuple[str | None, BaseException]] = []
    for sub in getattr(exc, "exceptions", ()):
        notes = getattr(sub, "__notes__", [])
        field = None
        for note in notes:
            # cattrs notes look like "Structuring class X @ attribute y".
            if "@ attribute " in note:
                field = note.rsplit("@ attribute ", 1)[1].strip()
        if isinstance(sub, cattrs.BaseValidationError):
            found.extend(validation_problems(sub))
        else:
            found.append((field, sub))
    return found


def positive(_: Any, attribute: attrs.Attribute, value: float) -> None:
    """attrs validator: the value must be > 0."""
    if value <= 0:
        raise ValueError(f"{env_name(attribute.name)} must be > 0, got {value}")


def non_negative(_: Any, attribute: attrs.Attribute, value: float) -> None:
    """attrs validator: the value must be >= 0."""
    if value < 0:
        raise ValueError(f"{env_name(attribute.name)} must be >= 0, got {value}")


def check_keys(_: Any, attribute: attrs.Attribute, value: str | tuple[str, ...] | None) -> None:
    """attrs validator: no key may be blank or hold whitespace (``" "`` accepted as a
    key, a paste gone wrong, a space that only one side trims)."""
    keys = (value,) if isinstance(value, str) else value or ()
    for key in keys:
        if not key.strip() or any(c.isspace() for c in key):
            raise ValueError(f"{env_name(attribute.name)}: a key is blank or holds whitespace")


SHORT_KEY = 16
"""Keys shorter than this are accepted with a warning: guessable (``cerebrum keygen``
makes 43 characters)."""

"""Command-line helpers: a YAML/JSON config file plus flag overrides for `HfArgumentParser`, eps given as fractions."""

from __future__ import annotations

import argparse
import difflib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

_FRACTION = re.compile(r"^\s*(-?\d+(?:\.\d*)?)\s*/\s*(\d+(?:\.\d*)?)\s*$")


def parse_fraction(value: str | float, name: str = "value") -> float:
    """A number given as a float or a fraction: `"8/255"` -> 0.0313..., `"0.5"` -> 0.5; numbers pass through.

    The one parser of fractions: command-line arguments (`parse_with_config`) and eps (`robustness.parse_eps`).

    Raises:
        ValueError: naming `name`, when `value` is neither a number nor a fraction of two numbers.
    """
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    try:
        if "/" in text:
            numerator, denominator = text.split("/")
            return float(numerator) / float(denominator)
        return float(text)
    except (ValueError, ZeroDivisionError) as error:
        raise ValueError(f"Cannot parse {name} {value!r}: give a float (0.031) or a fraction (8/255).") from error


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping of argument names to values.

    Raises:
        ValueError: naming `--config` and the file, when it cannot be read or parsed or is not a mapping.
    """
    try:
        text = Path(path).read_text()
        config = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"--config {path}: cannot read it as a YAML or JSON file ({error}).") from error
    if not isinstance(config, dict):
        raise ValueError(f"--config {path} must contain a mapping of argument names to values.")
    return config


def config_to_argv(config: dict[str, Any]) -> list[str]:
    """{"num_train_epochs": 2, "bf16": True, "acm_student_layers": [1, 2]} -> ['--num_train_epochs', '2', ...]."""
    argv: list[str] = []
    for key, value in config.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, bool):
            argv.append(str(value).lower())
        elif isinstance(value, (list, tuple)):
            argv.extend(str(item) for item in value)
        else:
            argv.append(str(value))
    return argv


def _fractions_to_floats(parser: HfArgumentParser, argv: Sequence[str]) -> list[str]:
    """The values of float flags given as fractions (`--pgd_eps 8/255`, `--pgd_eps=8/255`) as floats; the values of
    other flags (a path such as `--output_dir runs/10/3`) as they are."""
    float_flags = {option for action in parser._actions if action.type is float for option in action.option_strings}
    converted: list[str] = []
    flag = None
    for arg in argv:
        if arg.startswith("--"):
            flag, equals, value = arg.partition("=")
            if equals and flag in float_flags and _FRACTION.match(value):
                arg = f"{flag}={parse_fraction(value, flag)}"
        elif flag in float_flags and _FRACTION.match(arg):
            arg = str(parse_fraction(arg, flag))
        converted.append(arg)
    return converted


def _split_config(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the `--config` file or None, the other arguments); `--config=FILE` is read as `--config FILE`.

    Raises:
        ValueError: `--config` given twice or without a file.
    """
    argv = [part for arg in argv for part in (arg.split("=", 1) if arg.startswith("--config=") else [arg])]
    if argv.count("--config") > 1:
        raise ValueError("--config is given more than once: merge the files into one, or override with flags.")
    if "--config" not in argv:
        return None, argv
    index = argv.index("--config")
    if index + 1 >= len(argv) or argv[index + 1].startswith("--"):
        raise ValueError("--config needs a file path.")
    return argv[index + 1], argv[:index] + argv[index + 2 :]


def explicit_flags(argv: Sequence[str]) -> set[str]:
    """The field names of the flags given on the command line (not from `--config`): `--alpha-acm=3` -> alpha_acm."""
    _, argv = _split_config(argv)
    return {arg[2:].partition("=")[0].replace("-", "_") for arg in argv if arg.startswith("--")}


def config_flags(argv: Sequence[str]) -> tuple[str | None, set[str]]:
    """(the `--config` file or None, the field names its keys set).

    Raises:
        ValueError: as `parse_with_config` for `--config` itself and an unreadable file.
    """
    config, _ = _split_config(argv)
    keys = load_config(config) if config is not None else {}
    return config, {str(key).replace("-", "_") for key, value in keys.items() if value is not None}


def parse_with_config(parser: HfArgumentParser, argv: Sequence[str]) -> tuple[Any, ...]:
    """Parse `--config FILE` (YAML/JSON; also `--config=FILE`) then the other flags, which override the file's values.

    Raises:
        ValueError: `--config` given twice or without a file, an unreadable file, or an unknown flag or key
            (naming the closest valid ones).
    """
    config, argv = _split_config(argv)
    argv = renamed_flags(argv, hyphenated_flags(parser, argv))
    config_argv = config_to_argv(load_config(config)) if config is not None else []
    config_argv = renamed_flags(config_argv, hyphenated_flags(parser, config_argv))
    for where, arguments, prefix in ((f"keys in the config file {config}", config_argv, ""), ("arguments", argv, "--")):
        unknown = [name.replace("--", prefix) for name in _unknown_flags(parser, arguments)]  # keys as the file spells
        if unknown:
            raise ValueError(f"Unknown {where}: {'; '.join(unknown)}. Run with --help for the valid names.")
    return parser.parse_args_into_dataclasses(args=_fractions_to_floats(parser, config_argv + argv))


def _unknown_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The flags of `argv` the parser does not know, each with the known flags closest to it (`difflib`): flags
    spelt with underscores, not the --a-b aliases nor a deprecated flag (its help starts with "Deprecated")."""
    known = {option for action in parser._actions for option in action.option_strings}
    names = [option for action in parser._actions if not str(action.help or "").startswith("Deprecated")
             for option in action.option_strings if option.startswith("--") and "-" not in option[2:]]  # fmt: skip
    names = [name for name in names if name != "--help"]
    unknown = []
    for arg in argv:
        flag = arg.partition("=")[0]
        if flag.startswith("--") and flag not in known:
            close = difflib.get_close_matches(flag.replace("-", "_").replace("__", "--", 1), names, n=3)
            unknown.append(flag + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    return unknown


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """`parser.parse_args(argv)` of a script's argparse parser, whose error on an unknown flag names the closest
    valid ones (those of the chosen subcommand, for a parser with subcommands), as `parse_with_config` does."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        for action in parser._actions:  # the chosen subcommand's parser knows its flags
            if isinstance(action.choices, dict) and getattr(args, action.dest, None) in action.choices:
                parser = action.choices[getattr(args, action.dest)]
        unknown = _unknown_flags(parser, extra)
        parser.error(f"unrecognized arguments: {'; '.join(unknown) if unknown else ' '.join(extra)}")
    return args


def without_hyphenated_aliases(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` without the `--a-b` aliases `HfArgumentParser` adds to each `--a_b` flag: every script spells its
    flags with underscores (`parse_with_config` still reads the hyphenated ones, with a deprecation warning)."""
    for action in parser._actions:
        for alias in [option for option in action.option_strings if option.startswith("--") and "-" in option[2:]]:
            action.option_strings.remove(alias)
            del parser._option_string_actions[alias]
    return parser


def hyphenated_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, str]:
    """The flags of `argv` spelt with hyphens whose underscore spelling the parser knows: old -> new."""
    known = {option for action in parser._actions for option in action.option_strings}
    flags = {token.partition("=")[0] for token in argv if token.startswith("--") and "-" in token[2:]}
    return {flag: "--" + flag[2:].replace("-", "_") for flag in flags if "--" + flag[2:].replace("-", "_") in known}


def renamed_flags(argv: Sequence[str], renames: dict[str, str]) -> list[str]:
    """`argv` with each old spelling of a flag (`renames`: old -> new, e.g. "--batch-size" -> "--batch_size") replaced
    by its new one, with a `FutureWarning` naming both (old spellings are accepted for one release)."""
    import warnings

    updated = []
    for token in argv:
        flag, equals, value = token.partition("=")
        if flag in renames:
            warnings.warn(f"{flag} is deprecated: use {renames[flag]}", FutureWarning, stacklevel=2)
            token = renames[flag] + equals + value
        updated.append(token)
    return updated

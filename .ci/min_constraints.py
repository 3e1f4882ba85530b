"""Print a pip constraints file pinning every declared dependency to its minimum.

Usage: python3 .ci/min_constraints.py EXTRA... > constraints.txt

Reads pyproject.toml: the build system's requirements, the core
dependencies and those of the named extras (following an extra that names
``taskfate[other]``). Each ``>=X`` becomes ``==X``; an exact ``==X`` stays.
A requirement with no lower bound, or one this script does not understand,
is an error: a minimum-versions run that silently floated a dependency to
its newest release would prove nothing about the bound.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PROJECT = "taskfate"
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")
BOUND = re.compile(r"^(>=|==)\s*([0-9][0-9A-Za-z.+!-]*)$")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: list[str], extras: dict[str, list[str]], seen: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for requirement in requirements:
        if ";" in requirement:
            raise SystemExit(f"min_constraints: environment markers are not handled: {requirement!r}")
        match = REQUIREMENT.match(requirement)
        if not match:
            raise SystemExit(f"min_constraints: cannot read requirement {requirement!r}")
        name, wanted, spec = match.groups()
        if normalise(name) == PROJECT:
            for extra in (wanted or "[]").strip("[]").split(","):
                extra = extra.strip()
                if extra and extra not in seen:
                    seen.add(extra)
                    found.update(pins(extras[extra], extras, seen))
            continue
        lower = [BOUND.match(part.strip()) for part in spec.split(",") if part.strip().startswith((">=", "=="))]
        if len(lower) != 1 or lower[0] is None:
            raise SystemExit(f"min_constraints: {requirement!r} needs exactly one lower bound (>=X or ==X)")
        found[normalise(name)] = lower[0].group(2)
    return found


def main(argv: list[str]) -> int:
    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    extras: dict[str, list[str]] = config["project"].get("optional-dependencies", {})
    unknown = [extra for extra in argv if extra not in extras]
    if unknown:
        raise SystemExit(f"min_constraints: no such extra: {', '.join(unknown)}")
    found = pins(config["build-system"]["requires"], extras, set())
    found.update(pins(config["project"]["dependencies"], extras, set()))
    found.update(pins([f"{PROJECT}[{','.join(argv)}]"] if argv else [], extras, set()))
    for name, version in sorted(found.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

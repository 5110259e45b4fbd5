"""Resolve the project's lock together with the bundle's and download the wheels, on the control node.

    build-wheelhouse.py --dest DIR --python-version 3.13 --abi cp313 --platform TAG [--platform TAG ...]
                        --requirement project=PATH --requirement bundle=PATH

The application hosts cannot reach PyPI, so everything they install comes from here. pip resolves
both files at once, so a conflict surfaces now, on the control node, with both requirements named:
first between pins of the same package in two files, then anything pip's resolver reports. On
success DIR holds the wheels and DIR/requirements.lock, the resolved set (name==version per wheel,
with the SHA-256 of the very file downloaded), which the hosts install with --no-index and
--require-hashes; DIR.tar is the same, packed for the copy.

A lock that carries hashes (`--hash=sha256:...`, e.g. `scripts/lock` with DCS_LOCK_HASHES=1) is
downloaded once on its own first, in pip's hash-checking mode: a wheel that does not match its hash
stops the build. (The joint resolve that follows cannot be in that mode: the bundle's lock names
`celery[redis]` without a version, so that the project's Celery pin applies.)
"""

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(label: str, path: Path) -> dict[str, tuple[str, str]]:
    """canonical name -> (version, "label path:line 'text'") of every `name==version` line."""
    found = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        # A hashed lock continues a pin's line with its --hash options.
        line = raw.split("#", 1)[0].strip().removesuffix("\\").strip()
        if not line or line.startswith("-"):
            continue
        match = _NAME.match(line.split(";", 1)[0])
        if not match:
            continue
        spec = match[3].strip()
        if spec.startswith("==") and "," not in spec:
            found[canonical(match[1])] = (spec[2:].strip(), f"{label} {path}:{number} '{line}'")
    return found


def pin_conflicts(files: list[tuple[str, Path]]) -> list[str]:
    seen: dict[str, tuple[str, str]] = {}
    conflicts = []
    for label, path in files:
        for name, (version, where) in pins(label, path).items():
            if name in seen and seen[name][0] != version:
                conflicts.append(f"{seen[name][1]} and {where} pin {name} differently")
            seen.setdefault(name, (version, where))
    return conflicts


def wheel_requirement(path: Path) -> str:
    name, version = path.name.split("-")[:2]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{canonical(name)}=={version} --hash=sha256:{digest}"


def has_hashes(path: Path) -> bool:
    return "--hash=" in path.read_text()


def without_hashes(path: Path, dest: Path) -> Path:
    """A copy of a hashed lock without its hash options (continuation lines joined)."""
    text = path.read_text().replace("\\\n", " ")
    dest.write_text(re.sub(r"\s--hash=\S+", "", text))
    return dest


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dest", required=True, type=Path)
    parser.add_argument("--python", default=sys.executable, help="Python whose pip downloads")
    parser.add_argument("--python-version", required=True)
    parser.add_argument("--abi", required=True)
    parser.add_argument("--platform", action="append", required=True)
    parser.add_argument("--requirement", action="append", required=True, help="label=path")
    args = parser.parse_args()

    files = [(label, Path(path)) for label, _, path in (r.partition("=") for r in args.requirement)]
    conflicts = pin_conflicts(files)
    if conflicts:
        for conflict in conflicts:
            print(f"conflict: {conflict}", file=sys.stderr)
        print(
            "conflict: pin one version in both (or drop the package from the project's lock "
            "and let the bundle's pin apply).",
            file=sys.stderr,
        )
        return 3

    partial = args.dest.with_name(args.dest.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    download = [
        args.python, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
        "--only-binary=:all:", "--implementation", "cp",
        "--python-version", args.python_version, "--abi", args.abi,
        *[option for platform in args.platform for option in ("--platform", platform)],
        "--dest", str(partial),
    ]  # fmt: skip
    for label, path in files:
        if has_hashes(path):
            checked = subprocess.run(
                [*download, "--require-hashes", "--no-deps", "--requirement", str(path)],
                capture_output=True,
                text=True,
            )
            if checked.returncode != 0:
                for line in [line for line in checked.stderr.splitlines() if line.strip()][-25:]:
                    print(f"pip: {line}", file=sys.stderr)
                print(
                    f"hashes: the {label} lock {path} does not match what PyPI serves.",
                    file=sys.stderr,
                )
                return 4
    resolve = [
        without_hashes(path, partial / f".{label}.unhashed") if has_hashes(path) else path
        for label, path in files
    ]
    command = [*download, *[option for path in resolve for option in ("--requirement", str(path))]]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        # pip's own words name the requirements in conflict ("The conflict is caused by: ...").
        lines = [
            line
            for line in result.stderr.splitlines()
            if line.strip() and not line.startswith("WARNING: Location")
        ]
        for line in lines[-25:]:
            print(f"pip: {line}", file=sys.stderr)
        print(
            "conflict: pip could not resolve the project's lock together with the bundle's ("
            + ", ".join(f"{label} {path}" for label, path in files)
            + ") for Python "
            + f"{args.python_version} on {args.platform[0]}; see what pip says above "
            + "(a conflict names both requirements).",
            file=sys.stderr,
        )
        return 2

    for unhashed in partial.glob(".*.unhashed"):
        unhashed.unlink()
    wheels = sorted(partial.glob("*.whl"))
    (partial / "requirements.lock").write_text(
        "# Resolved on the control node from "
        + " + ".join(f"{label} ({path.name})" for label, path in files)
        + f" for Python {args.python_version}; each wheel's SHA-256 (pip --require-hashes).\n"
        + "".join(f"{wheel_requirement(wheel)}\n" for wheel in wheels)
    )
    shutil.rmtree(args.dest, ignore_errors=True)
    partial.rename(args.dest)
    packed = args.dest.with_name(args.dest.name + ".tar")
    with tarfile.open(packed.with_name(packed.name + ".part"), "w") as tar:
        for path in sorted(args.dest.iterdir()):
            tar.add(path, arcname=path.name)
    packed.with_name(packed.name + ".part").rename(packed)
    print(f"{len(wheels)} wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Checks that every C++ and proto source of the tree is clang-formatted
(.clang-format at the root; `make format` applies it).
Usage: format_check.py SOURCE_DIR. Lists each file that differs; exits 1 if any.
"""
import os
import shutil
import subprocess
import sys

FOLDERS = ("core", "pack", "router", "rpc", "trainer", "server", "cli", "kernels", "tests", "bench", "proto")
EXTENSIONS = (".h", ".cc", ".cu", ".proto")


def main():
    root = sys.argv[1]
    tool = shutil.which("clang-format-14") or shutil.which("clang-format")
    if tool is None:
        print("clang-format not found (scripts/install-deps.sh installs Debian's clang-format)")
        return 1
    files = []
    for folder in FOLDERS:
        for dirpath, _, names in os.walk(os.path.join(root, folder)):
            files += [os.path.join(dirpath, n) for n in sorted(names) if n.endswith(EXTENSIONS)]
    bad = []
    for f in files:
        r = subprocess.run([tool, "--dry-run", "-Werror", "--style=file", f], cwd=root, capture_output=True,
                           text=True)
        if r.returncode != 0:
            bad.append(os.path.relpath(f, root))
    for f in bad:
        print(f"not formatted: {f}")
    print(f"{len(files)} files checked, {len(bad)} not formatted (run `make format`)")
    return 1 if bad or len(files) < 100 else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Clang's thread-safety analysis over the annotated code, as errors.

GCC ignores ABSL_GUARDED_BY and friends, so the build alone never checks them.
This compiles (clang++ -fsyntax-only -Wthread-safety -Werror, with every other
flag of the real build from compile_commands.json) each of our translation
units that sees an annotated header, and fails on any diagnostic.
Usage: thread_safety_check.py BUILD_DIR SOURCE_DIR [JOBS]
"""
import concurrent.futures
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

LAYERS = ("core", "pack", "router", "rpc", "trainer", "server", "cli")
ANNOTATION = re.compile(r"\bABSL_(GUARDED_BY|PT_GUARDED_BY|EXCLUSIVE_LOCKS_REQUIRED|SHARED_LOCKS_REQUIRED|"
                        r"ACQUIRED_BEFORE|ACQUIRED_AFTER|LOCKS_EXCLUDED|LOCKABLE|SCOPED_LOCKABLE)\b")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
# GCC options clang does not know (none today; listed here when one appears).
GCC_ONLY = set()


def project_includes(path, root, cache):
    """Project headers `path` includes, transitively."""
    if path in cache:
        return cache[path]
    cache[path] = set()
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return cache[path]
    out = set()
    for inc in INCLUDE.findall(text):
        full = os.path.join(root, inc)
        if os.path.isfile(full):
            out.add(full)
            out |= project_includes(full, root, cache)
    cache[path] = out
    return out


def clang_command(entry, clang):
    args = entry.get("arguments") or shlex.split(entry["command"])
    out = [clang]
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD") or a in GCC_ONLY:
            continue
        out.append(a)
    return out + ["-fsyntax-only", "-Wthread-safety", "-Werror"]


def main():
    build, root = sys.argv[1], os.path.realpath(sys.argv[2])
    jobs = int(sys.argv[3]) if len(sys.argv) > 3 else os.cpu_count() or 1
    clang = shutil.which("clang++-14") or shutil.which("clang++")
    if clang is None:
        print("clang++ not found (scripts/install-deps.sh installs Debian's clang)")
        return 1
    entries = json.load(open(os.path.join(build, "compile_commands.json")))
    cache = {}
    annotated = {}
    todo = []
    for e in entries:
        src = os.path.realpath(os.path.join(e["directory"], e["file"]))
        rel = os.path.relpath(src, root)
        if rel.split(os.sep)[0] not in LAYERS or not src.endswith(".cc"):
            continue
        files = {src} | project_includes(src, root, cache)
        for f in files:
            if f not in annotated:
                annotated[f] = bool(ANNOTATION.search(open(f, encoding="utf-8").read()))
        if any(annotated[f] for f in files):
            todo.append((rel, e))
    if len(todo) < 5:
        print(f"only {len(todo)} annotated translation units found: wrong build or source dir?")
        return 1

    def check(item):
        rel, e = item
        r = subprocess.run(clang_command(e, clang), cwd=e["directory"], capture_output=True, text=True)
        return rel, r.returncode, r.stderr

    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for rel, code, err in pool.map(check, sorted(todo, key=lambda t: t[0])):
            print(f"{'FAIL' if code else 'ok  '} {rel}")
            if code:
                failed += 1
                sys.stdout.write(err)
    print(f"{len(todo)} translation units checked with -Wthread-safety -Werror, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

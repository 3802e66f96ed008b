#!/usr/bin/env python3
"""Checks the layering of the source tree (DESIGN.md, "Layout") from the includes.

Every file of a layer folder may include only headers of the folders its row
allows, and only the layers that may speak gRPC see protobuf/gRPC headers.
The build enforces the same rule (cmake/layers.cmake gives each target a view
of the allowed folders only); this test says in one place which line breaks it.
Usage: layering_test.py SOURCE_ROOT. Prints each violation; exits 1 if any.
"""
import os
import re
import sys

# folder -> folders it may include from (itself included). Mirrors
# cmake/layers.cmake; "proto" stands for the generated "skillpack/v1/..." headers.
ALLOWED = {
    "kernels": {"kernels"},
    "core": {"core", "kernels"},
    "pack": {"pack", "core", "kernels"},
    "router": {"router", "pack", "core", "kernels"},
    "rpc": {"rpc", "core", "kernels", "proto"},
    "trainer": {"trainer", "rpc", "router", "pack", "core", "kernels", "proto"},
    "server": {"server", "rpc", "router", "pack", "core", "kernels", "proto"},
    "cli": {"cli", "rpc", "router", "pack", "core", "kernels", "proto"},
}
# System headers a layer must not see: gRPC/protobuf below rpc, and anything
# of ours or abseil's / libtorch's in the CUDA kernels (plain launchers).
FORBIDDEN_SYSTEM = {
    "kernels": [r"^absl/", r"^ATen/", r"^torch/", r"^c10/"],
    "core": [r"^grpcpp?/", r"^google/protobuf/"],
    "pack": [r"^grpcpp?/", r"^google/protobuf/"],
    "router": [r"^grpcpp?/", r"^google/protobuf/"],
}
SOURCE_EXT = (".h", ".cc", ".cu", ".inl")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def folder_of(include):
    if include.startswith("skillpack/v1/"):
        return "proto"
    head = include.split("/", 1)[0]
    return head if head in ALLOWED else None


def main():
    root = sys.argv[1]
    violations = []
    files = 0
    for layer in ALLOWED:
        for dirpath, _, names in os.walk(os.path.join(root, layer)):
            for name in sorted(names):
                if not name.endswith(SOURCE_EXT):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                files += 1
                with open(path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = m.group(2)
                        dep = folder_of(target)
                        if dep is not None and dep not in ALLOWED[layer]:
                            violations.append(f"{rel}:{lineno}: {layer}/ may not include {target} ({dep}/)")
                        for pattern in FORBIDDEN_SYSTEM.get(layer, []):
                            if re.search(pattern, target):
                                violations.append(f"{rel}:{lineno}: {layer}/ may not include {target}")
    for v in violations:
        print(v)
    if files < 50:
        print(f"only {files} source files found under {root}: wrong root?")
        return 1
    print(f"{files} files checked, {len(violations)} layering violations")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())

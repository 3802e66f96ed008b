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

# folder -> folders it may include from (itself included), read from the build's
# own table (cmake/layers.cmake, set(SKILLPACK_LAYER_<folder> ...)) so the two
# cannot disagree. "proto" stands for the generated "skillpack/v1/..." headers,
# which come only through rpc/ (sp_rpc links sp_proto), so exactly the layers
# that may use rpc/ may include them.
LAYER_LINE = re.compile(r"^set\(SKILLPACK_LAYER_(\w+)\s+([^)]*)\)", re.M)


def read_layers(root):
    text = open(os.path.join(root, "cmake", "layers.cmake"), encoding="utf-8").read()
    allowed = {}
    for layer, folders in LAYER_LINE.findall(text):
        allowed[layer] = set(folders.split())
        if "rpc" in allowed[layer]:
            allowed[layer].add("proto")
    return allowed


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


def folder_of(include, allowed):
    if include.startswith("skillpack/v1/"):
        return "proto"
    head = include.split("/", 1)[0]
    return head if head in allowed else None


def main():
    root = sys.argv[1]
    allowed = read_layers(root)
    if len(allowed) < 8:
        print(f"cmake/layers.cmake lists {len(allowed)} layers, expected 8: its format changed?")
        return 1
    violations = []
    files = 0
    for layer in allowed:
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
                        dep = folder_of(target, allowed)
                        if dep is not None and dep not in allowed[layer]:
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

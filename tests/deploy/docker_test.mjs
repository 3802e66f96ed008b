// Checks docker/Dockerfile and docker/Dockerfile.cuda without building them
// (scripts/container-test.sh builds and runs the image; it is too slow for
// ctest): each is multi-stage on Debian 12, keeps ccache in a cache mount,
// and its final stage agrees with deploy/k8s (image names and tags = the
// project version, user, entrypoint, volume and model paths, ports) and with
// the binaries (every flag of CMD in `skillpack-server --help`; the
// HEALTHCHECK runs `skillpack client health`, which the CLI has); the runtime
// packages provide every shared library the built binaries need (readelf +
// dpkg -S); .dockerignore keeps the build trees out of the context.
// Usage: node docker_test.mjs SOURCE_DIR BUILD_DIR
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, realpathSync } from "node:fs";
import { checks, npmRequire } from "./harness.mjs";
import path from "node:path";
import assert from "node:assert/strict";

const [source, build] = process.argv.slice(2);
const require = npmRequire(source, build);
const YAML = require("yaml");

const { check, finish } = checks();
const read = (rel) => readFileSync(path.join(source, rel), "utf8");

// A Dockerfile as a list of stages, each a list of {op, args} instructions
// (continuation lines joined, comments dropped).
function parseDockerfile(text) {
  const lines = [];
  let cur = "";
  for (const raw of text.split("\n")) {
    if (/^\s*#/.test(raw) && cur === "") continue;
    if (/^\s*#/.test(raw)) continue;  // a comment inside a continued instruction
    const line = raw.replace(/\s+$/, "");
    if (line.endsWith("\\")) {
      cur += line.slice(0, -1) + " ";
      continue;
    }
    cur += line;
    if (cur.trim() !== "") lines.push(cur.trim());
    cur = "";
  }
  const globalArgs = {};
  const stages = [];
  for (const l of lines) {
    const m = l.match(/^(\w+)\s+([\s\S]*)$/);
    assert.ok(m, `cannot parse '${l}'`);
    const ins = { op: m[1].toUpperCase(), args: m[2] };
    if (ins.op === "FROM") {
      stages.push({ from: ins.args, ins: [] });
    } else if (stages.length === 0) {
      assert.equal(ins.op, "ARG", `only ARG may come before FROM: ${l}`);
      const [k, v] = ins.args.split("=");
      globalArgs[k] = v;
    } else {
      stages[stages.length - 1].ins.push(ins);
    }
  }
  return { globalArgs, stages };
}
const jsonArray = (s) => {
  const v = JSON.parse(s);
  assert.ok(Array.isArray(v), `not the exec form (a JSON array): ${s}`);
  return v;
};
const last = (stage, op) => [...stage.ins].reverse().find((i) => i.op === op);

// The shared libraries the built binaries load directly (readelf NEEDED,
// resolved by ldd) and the Debian package owning each: [{bin, lib, owner}].
let libraries = null;
function binaryLibraries() {
  if (libraries) return libraries;
  const found = [];
  for (const bin of ["server/skillpack-server", "cli/skillpack"]) {
    const needed = [
      ...execFileSync("readelf", ["-d", path.join(build, bin)])
        .toString()
        .matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g),
    ].map((x) => x[1]);
    assert.ok(needed.length > 5, `readelf found ${needed.length} libraries in ${bin}`);
    const ldd = execFileSync("ldd", [path.join(build, bin)]).toString();
    const files = needed.map((lib) => {
      const where = ldd.match(new RegExp(`^\\s*${lib.replace(/[.+]/g, "\\$&")} => (\\S+)`, "m"));
      assert.ok(where, `${bin}: ldd does not resolve ${lib}`);
      const real = realpathSync(where[1]);
      // dpkg may know the file by its /usr-merged or its /lib path.
      return { lib, candidates: [real, real.replace(/^\/usr\/lib\//, "/lib/"), where[1]] };
    });
    const owners = new Map();
    const dpkg = spawnSync("dpkg", ["-S", ...new Set(files.flatMap((f) => f.candidates))]);
    for (const line of dpkg.stdout.toString().split("\n")) {
      const m = line.match(/^([^:]+)(?::[a-z0-9]+)?: (\S+)$/);
      if (m) owners.set(m[2], m[1]);
    }
    for (const { lib, candidates } of files) {
      const owner = candidates.map((c) => owners.get(c)).find((o) => o);
      assert.ok(owner, `${bin}: no Debian package owns ${candidates[0]}`);
      found.push({ bin, lib, owner });
    }
  }
  libraries = found;
  return libraries;
}

// deploy/k8s: the base Deployment and the GPU overlay's image.
const deployment = YAML.parse(read("deploy/k8s/base/deployment.yaml"));
const pod = deployment.spec.template.spec;
const container = pod.containers[0];
const gpuPatch = YAML.parse(read("deploy/k8s/overlays/gpu/deployment-patch.yaml"));
const gpuImage = gpuPatch.find((op) => op.path === "/spec/template/spec/containers/0/image").value;
const mountPath = (name) => container.volumeMounts.find((m) => m.name === name).mountPath;
const version = read("CMakeLists.txt").match(/project\(skillpack VERSION ([0-9.]+)/)[1];

const serverHelp = execFileSync(path.join(build, "server/skillpack-server"), ["--help"]).toString();
const clientHelp = execFileSync(path.join(build, "cli/skillpack"), ["client", "--help"]).toString();

check("deploy/k8s image names carry the project version", () => {
  assert.equal(container.image, `skillpack-server:${version}`);
  assert.equal(gpuImage, `skillpack-server:${version}-cuda`);
  const script = read("scripts/container-test.sh");
  assert.match(script, new RegExp(`IMAGE:-localhost/skillpack-server:${version.replace(/\./g, "\\.")}\\b`));
});

for (const file of ["docker/Dockerfile", "docker/Dockerfile.cuda"]) {
  const { globalArgs, stages } = parseDockerfile(read(file));
  const final = stages[stages.length - 1];

  check(`${file}: multi-stage on Debian 12`, () => {
    assert.equal(globalArgs.DEBIAN_IMAGE, "docker.io/library/debian:bookworm");
    const debianStages = stages.filter((s) => s.from.startsWith("${DEBIAN_IMAGE}"));
    assert.ok(debianStages.length >= 2, "a build stage and a runtime stage on ${DEBIAN_IMAGE}");
    assert.equal(final.from, "${DEBIAN_IMAGE}");
    assert.ok(final.ins.some((i) => i.op === "COPY" && i.args.startsWith("--from=build")), "binaries from the build stage");
  });

  check(`${file}: the build compiles with ccache in a cache mount, Release`, () => {
    const buildStage = stages.find((s) => / AS build$/i.test(s.from));
    assert.ok(buildStage, "no stage named build");
    const run = buildStage.ins.find((i) => i.op === "RUN" && i.args.includes("cmake --build"));
    assert.ok(run, "no RUN with cmake --build");
    assert.match(run.args, /--mount=type=cache,target=\/ccache/);
    assert.match(run.args, /-DCMAKE_BUILD_TYPE=Release/);
    assert.match(run.args, /--target skillpack-server skillpack\b/);
    const env = buildStage.ins.filter((i) => i.op === "ENV").map((i) => i.args).join(" ");
    assert.match(env, /CCACHE_DIR=\/ccache/);
    if (file.endsWith(".cuda")) {
      assert.match(run.args, /-DSKILLPACK_WITH_CUDA=ON/);
      assert.match(run.args, /grep -q 'skillpack: CUDA kernels ON'/);
    }
  });

  const entrypoint = jsonArray(last(final, "ENTRYPOINT").args);
  const cmd = jsonArray(last(final, "CMD").args);
  const flag = (name) => cmd[cmd.indexOf(name) + 1];

  check(`${file}: entrypoint and default arguments`, () => {
    assert.deepEqual(entrypoint, ["skillpack-server"]);
    assert.deepEqual(container.command, entrypoint);
    for (const a of cmd.filter((a) => a.startsWith("--"))) {
      assert.ok(new RegExp(`(^|\\s)${a}\\s`, "m").test(serverHelp), `${a} is not in skillpack-server --help`);
    }
    assert.equal(flag("--model"), mountPath("model"));
    assert.equal(flag("--packs"), mountPath("packs"));
    // The Deployment passes the same paths and ports.
    const args = container.args;
    assert.equal(args[args.indexOf("--model") + 1], flag("--model"));
    assert.equal(args[args.indexOf("--packs") + 1], flag("--packs"));
    assert.equal(args[args.indexOf("--grpc-port") + 1], flag("--grpc-port"));
    assert.equal(args[args.indexOf("--metrics-port") + 1], flag("--metrics-port"));
  });

  check(`${file}: non-root user = the Deployment's`, () => {
    const [uid, gid] = last(final, "USER").args.split(":").map(Number);
    assert.ok(uid > 0 && gid > 0, "USER must be a numeric non-root uid:gid");
    assert.equal(uid, pod.securityContext.runAsUser);
    assert.equal(gid, pod.securityContext.runAsGroup);
  });

  check(`${file}: the pack store is a volume; ports exposed`, () => {
    const volumes = final.ins.filter((i) => i.op === "VOLUME").flatMap((i) => jsonArray(i.args));
    assert.deepEqual(volumes, [flag("--packs")]);
    const exposed = final.ins.filter((i) => i.op === "EXPOSE").flatMap((i) => i.args.split(/\s+/).map(Number));
    for (const p of container.ports) assert.ok(exposed.includes(p.containerPort), `port ${p.containerPort}`);
    assert.ok(exposed.includes(Number(flag("--grpc-port"))));
    assert.ok(exposed.includes(Number(flag("--metrics-port"))));
    assert.ok(exposed.includes(8000), "the OpenAI-compatible HTTP API's port");
  });

  check(`${file}: HEALTHCHECK = skillpack client health on the gRPC port`, () => {
    const hc = last(final, "HEALTHCHECK");
    assert.ok(hc, "no HEALTHCHECK");
    const m = hc.args.match(/^((?:--[a-z-]+=\S+\s+)*)CMD\s+(\[.*\])$/);
    assert.ok(m, `HEALTHCHECK options CMD [exec form]: ${hc.args}`);
    const test = jsonArray(m[2]);
    assert.deepEqual(test.slice(0, 5), ["skillpack", "client", "health", "--server", `127.0.0.1:${flag("--grpc-port")}`]);
    assert.ok(/^\s+health\b/m.test(clientHelp), "`skillpack client --help` lists no health command");
    for (const a of test.filter((a) => a.startsWith("--"))) {
      assert.ok(clientHelp.includes(a), `${a} is not in skillpack client --help`);
    }
    assert.match(m[1], /--timeout=\d+s/);
    assert.match(m[1], /--start-period=\d+s/);
  });

  // Every shared library the binaries load comes from a package the runtime
  // stage installs, or from the base system (libc6, libgcc-s1, libstdc++6).
  check(`${file}: runtime packages cover the binaries' libraries`, () => {
    const install = final.ins.find((i) => i.op === "RUN" && i.args.includes("apt-get install"));
    assert.ok(install, "no apt-get install in the runtime stage");
    const packages = new Set(install.args.split(/\s+/).filter((w) => /^[a-z0-9][a-z0-9.+-]+$/.test(w)));
    for (const base of ["libc6", "libgcc-s1", "libstdc++6"]) packages.add(base);
    for (const { bin, lib, owner } of binaryLibraries()) {
      if (owner.startsWith("libcud") || owner.startsWith("libcublas")) continue;  // CUDA: from the toolkit
      assert.ok(packages.has(owner), `${bin} needs ${lib} (${owner}), not installed by the runtime stage`);
    }
  });
}

check(".dockerignore keeps build trees, .git and node_modules out", () => {
  const ignore = read(".dockerignore")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  for (const p of [".git", "build", "build-*", "demo-data", "**/node_modules"]) {
    assert.ok(ignore.includes(p), `${p} missing`);
  }
});

finish("docker_test");

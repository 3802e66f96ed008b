// Validates deploy/k8s (Kustomize base + overlays cpu, gpu) without a
// cluster: every object of the base and of each overlay (the base with the
// overlay's RFC 6902 patches applied by fast-json-patch) against the
// Kubernetes schemas of the npm packages kubernetes-models and
// @kubernetes-models/prometheus-operator; the overlays' patches against the
// base; the references between objects (ConfigMap keys, Secret, PVCs, ports,
// probes, HPA target, ServiceMonitor port); every flag in the Deployment's args
// against `skillpack-server --help`; and, where kubectl is installed, that
// `kubectl kustomize` renders the same objects.
// Usage: node k8s_test.mjs SOURCE_DIR BUILD_DIR
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, existsSync } from "node:fs";
import { checks, npmRequire } from "./harness.mjs";
import path from "node:path";
import assert from "node:assert/strict";

const [source, build] = process.argv.slice(2);
const require = npmRequire(source, build);
const YAML = require("yaml");
const jsonpatch = require("fast-json-patch");
const models = {
  "v1/ConfigMap": require("kubernetes-models/v1").ConfigMap,
  "v1/Secret": require("kubernetes-models/v1").Secret,
  "v1/PersistentVolumeClaim": require("kubernetes-models/v1").PersistentVolumeClaim,
  "v1/Service": require("kubernetes-models/v1").Service,
  "apps/v1/Deployment": require("kubernetes-models/apps/v1").Deployment,
  "autoscaling/v2/HorizontalPodAutoscaler": require("kubernetes-models/autoscaling/v2").HorizontalPodAutoscaler,
  "monitoring.coreos.com/v1/ServiceMonitor": require("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1")
    .ServiceMonitor,
};

const { check, finish } = checks();

const k8s = path.join(source, "deploy/k8s");
const readYamlDocs = (file) =>
  YAML.parseAllDocuments(readFileSync(file, "utf8")).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors.map(String).join("; ")}`);
    return d.toJS();
  });

// The objects of a kustomization directory: its resources (files or other
// kustomizations), then its patches. Only the fields used here are
// accepted, so a field this test does not check cannot slip in.
function build_(dir) {
  const k = readYamlDocs(path.join(dir, "kustomization.yaml"))[0];
  assert.equal(k.apiVersion, "kustomize.config.k8s.io/v1beta1", `${dir}: apiVersion`);
  assert.equal(k.kind, "Kustomization", `${dir}: kind`);
  for (const key of Object.keys(k)) {
    assert.ok(["apiVersion", "kind", "resources", "patches"].includes(key), `${dir}: field ${key} is not checked here`);
  }
  let objects = [];
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    assert.ok(existsSync(p), `${dir}: resource ${r} does not exist`);
    objects = objects.concat(existsSync(path.join(p, "kustomization.yaml")) ? build_(p) : readYamlDocs(p));
  }
  for (const patch of k.patches ?? []) {
    assert.ok(patch.path && patch.target, `${dir}: a patch needs path and target`);
    const ops = readYamlDocs(path.join(dir, patch.path))[0];
    assert.ok(Array.isArray(ops), `${dir}/${patch.path}: an RFC 6902 patch is a list of operations`);
    const matches = objects.filter((o) => o.kind === patch.target.kind && o.metadata.name === patch.target.name);
    assert.equal(matches.length, 1, `${dir}/${patch.path}: target ${JSON.stringify(patch.target)} matches one object`);
    const index = objects.indexOf(matches[0]);
    const error = jsonpatch.validate(ops, matches[0]);
    assert.equal(error, undefined, `${dir}/${patch.path}: ${error}`);
    objects[index] = jsonpatch.applyPatch(jsonpatch.deepClone(matches[0]), ops, true, false).newDocument;
  }
  return objects;
}

function validate(obj) {
  const Model = models[`${obj.apiVersion}/${obj.kind}`];
  assert.ok(Model, `no schema for ${obj.apiVersion} ${obj.kind}`);
  new Model(obj).validate();  // throws on a schema violation
}

const help = spawnSync(path.join(build, "server/skillpack-server"), ["--help"]).stdout?.toString() ?? "";
const serverFlags = new Set([...help.matchAll(/(--[a-z][a-z0-9-]*)/g)].map((m) => m[1]));
const metricsSource = readFileSync(path.join(source, "server/server_metrics.cc"), "utf8");

function checkReferences(name, objects) {
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const [deployment] = byKind("Deployment");
  const [configMap] = byKind("ConfigMap");
  const [service] = byKind("Service");
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  check(`${name}: every flag in the args is a skillpack-server flag`, () => {
    assert.ok(serverFlags.size > 10, `skillpack-server --help listed no flags: ${help}`);
    const flags = container.args.filter((a) => a.startsWith("--"));
    assert.ok(flags.length >= 10);
    for (const f of flags) assert.ok(serverFlags.has(f), `${f} is not a flag of skillpack-server`);
    for (const a of container.args) {
      for (const m of a.matchAll(/\$\(([A-Z_]+)\)/g)) {
        assert.ok(m[1] in configMap.data, `${a}: ${m[1]} is not a key of ConfigMap ${configMap.metadata.name}`);
      }
    }
    assert.equal(container.envFrom[0].configMapRef.name, configMap.metadata.name);
  });
  check(`${name}: volumes, secret and claims line up with the flags`, () => {
    const arg = (flag) => container.args[container.args.indexOf(flag) + 1];
    const mountOf = (dir) => container.volumeMounts.find((m) => dir === m.mountPath || dir.startsWith(m.mountPath + "/"));
    const volume = (n) => pod.volumes.find((v) => v.name === n);
    const claims = byKind("PersistentVolumeClaim").map((c) => c.metadata.name);
    assert.equal(volume(mountOf(arg("--packs")).name).persistentVolumeClaim.claimName, "skillpack-packs");
    assert.ok(claims.includes("skillpack-packs"));
    assert.ok(claims.includes(volume(mountOf(arg("--model")).name).persistentVolumeClaim.claimName));
    const tokenMount = mountOf(arg("--admin-token-file"));
    const secretName = volume(tokenMount.name).secret.secretName;
    const secret = byKind("Secret").find((s) => s.metadata.name === secretName);
    assert.ok(secret, `Secret ${secretName}`);
    assert.ok(path.basename(arg("--admin-token-file")) in secret.stringData, "the token file is a key of the Secret");
  });
  check(`${name}: ports, native gRPC probes, Service, ServiceMonitor and HPA line up`, () => {
    const arg = (flag) => container.args[container.args.indexOf(flag) + 1];
    const port = (n) => container.ports.find((p) => p.name === n).containerPort;
    assert.equal(String(port("grpc")), arg("--grpc-port"));
    assert.equal(String(port("metrics")), arg("--metrics-port"));
    for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
      assert.equal(container[probe].grpc.port, port("grpc"), probe);
    }
    assert.equal(container.readinessProbe.grpc.service, "skillpack.v1.Inference");
    for (const p of service.spec.ports) assert.ok(container.ports.some((c) => c.name === p.targetPort), p.name);
    for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(deployment.spec.template.metadata.labels[k], v);
    const [monitor] = byKind("ServiceMonitor");
    for (const e of monitor.spec.endpoints) assert.ok(service.spec.ports.some((p) => p.name === e.port), e.port);
    for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) assert.equal(service.metadata.labels[k], v);
    const [hpa] = byKind("HorizontalPodAutoscaler");
    assert.equal(hpa.spec.scaleTargetRef.kind, "Deployment");
    assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
    for (const m of hpa.spec.metrics) {
      assert.equal(m.type, "Pods");
      assert.ok(metricsSource.includes(`"${m.pods.metric.name}"`), `${m.pods.metric.name} is a metric the server exports`);
    }
    const grace = Number(configMap.data.GRACE_SECONDS);
    assert.ok(pod.terminationGracePeriodSeconds > grace, "terminationGracePeriodSeconds > --grace-seconds");
  });
}

const kubectl = spawnSync("kubectl", ["version", "--client"]).status === 0;
for (const dir of ["base", "overlays/cpu", "overlays/gpu"]) {
  let objects = [];
  check(`${dir}: builds (resources, RFC 6902 patches)`, () => {
    objects = build_(path.join(k8s, dir));
    const kinds = objects.map((o) => o.kind).sort();
    assert.deepEqual(kinds, ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
      "PersistentVolumeClaim", "Secret", "Service", "ServiceMonitor"]);
  });
  for (const obj of objects) check(`${dir}: ${obj.kind} ${obj.metadata.name} matches its schema`, () => validate(obj));
  if (objects.length) checkReferences(dir, objects);
  if (kubectl) {
    check(`${dir}: kubectl kustomize renders the same objects`, () => {
      const rendered = YAML.parseAllDocuments(execFileSync("kubectl", ["kustomize", path.join(k8s, dir)]).toString())
        .map((d) => d.toJS());
      const key = (o) => `${o.kind}/${o.metadata.name}`;
      const sort = (list) => [...list].sort((a, b) => key(a).localeCompare(key(b)));
      assert.deepEqual(sort(rendered), sort(objects));
    });
  }
}
const gpu = (() => { try { return build_(path.join(k8s, "overlays/gpu")); } catch { return []; } })();
check("overlays/gpu: requests one nvidia.com/gpu", () => {
  const c = gpu.find((o) => o.kind === "Deployment").spec.template.spec.containers[0];
  assert.equal(c.resources.limits["nvidia.com/gpu"], "1");
});
// The schema check can fail: a Deployment with a port that is no number is refused.
check("the schema validation rejects a broken Deployment", () => {
  const broken = build_(path.join(k8s, "base")).find((o) => o.kind === "Deployment");
  broken.spec.template.spec.containers[0].ports[0].containerPort = "grpc";
  assert.throws(() => validate(broken));
});
if (!kubectl) console.log("note: kubectl not installed; the Kustomize rendering comparison was skipped");
finish("k8s");

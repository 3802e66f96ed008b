// What the deploy/ tests share: the npm packages of tests/npm (installed once
// per build folder by scripts/npm-test-deps.sh) and named checks that report
// every failure and decide the exit status.
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";

// A require() that resolves the pinned npm test packages for `build`.
export function npmRequire(source, build) {
  const npmDir = execFileSync("bash", [path.join(source, "scripts/npm-test-deps.sh"), build], {
    stdio: ["ignore", "pipe", "inherit"],
  })
    .toString()
    .trim();
  return createRequire(path.join(npmDir, "node_modules", "noop.js"));
}

// check(name, fn) runs fn and records a thrown error as a failure (with the
// top of its stack);
// finish(label) prints the counts and exits 0 only when checks ran and none failed.
export function checks() {
  let passed = 0;
  let failed = 0;
  return {
    check(name, fn) {
      try {
        fn();
        passed++;
        console.log(`ok   ${name}`);
      } catch (e) {
        failed++;
        console.log(`FAIL ${name}\n     ${String(e.stack || e).split("\n").slice(0, 6).join("\n     ")}`);
      }
    },
    finish(label) {
      console.log(`${label}: ${passed} passed, ${failed} failed`);
      process.exit(failed === 0 && passed > 0 ? 0 : 1);
    },
  };
}

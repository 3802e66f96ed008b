#!/usr/bin/python3
"""The soak driver behind scripts/soak.sh (run that; it prepares the inputs).

Starts the real skillpack-server on 127.0.0.1 and, for --seconds, keeps it
busy the way hostile and careless clients would, with Python's grpcio:
  - streams and unary calls; streams cancelled by the client after their first
    chunk; calls with short deadlines (50-400 ms);
  - uploads of a real pack, then deleted; uploads from a child process killed
    with SIGKILL mid-way (after k of n chunks reached the wire);
  - crafted bad files (garbage, truncated pack, wrong sha256, a manifest nested
    100k deep, a pack for another base) and bad requests (invalid UTF-8, bad
    sampling values, unknown packs and modes, oversize prompt and request_id, a
    pack name with invalid UTF-8).
Meanwhile it samples the server's RSS. At the end it checks, and writes to
--out as JSON:
  - the server never died, and exits 0 on SIGTERM;
  - RSS growth after warm-up (the first 20% of the run) is below --max-rss-growth %;
  - /metrics skillpack_requests_total agrees with the client's counts: equal
    for every outcome the client alone decides (OK of calls without deadline,
    INVALID_ARGUMENT, NOT_FOUND, ...; client cancels = CANCELLED; killed
    uploads = UploadPack CANCELLED), bounded for deadline calls (a deadline can
    pass before the server sees the call, or just after it answered OK);
  - every crafted case got its expected code and a message naming no server path;
  - the server's log holds no libprotobuf line (one per bad request would let
    any client write into it);
  - the pack store holds no .part file and every stored pack verifies.
Exit status 0 when every check holds, 1 otherwise.
"""
import argparse
import collections
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import grpc

CHUNK = 16 * 1024


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--other-model", required=True, help="a model of another base (for a foreign pack)")
    p.add_argument("--pack", required=True, help="a valid pack for --model")
    p.add_argument("--foreign-pack", required=True, help="a pack made for --other-model")
    p.add_argument("--work", required=True, help="scratch folder (the pack store goes here)")
    p.add_argument("--pb", required=True, help="folder with protoc's Python output")
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--streams", type=int, default=6)
    p.add_argument("--max-rss-growth", type=float, default=5.0)
    p.add_argument("--out", required=True)
    p.add_argument("--child-upload", nargs=3, metavar=("ADDR", "TOKEN", "FILE"), help=argparse.SUPPRESS)
    return p.parse_args()


def raw_unary(channel, method):
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


def upload_requests(pb, name, data, sha=None, total=None, pause=0.0, report=None, stop_after=None):
    header = pb.UploadHeader(name=name, sha256=sha or hashlib.sha256(data).hexdigest(),
                             total_size=len(data) if total is None else total, overwrite=True)
    yield pb.UploadPackRequest(header=header)
    sent = 0
    for i in range(0, len(data), CHUNK):
        if stop_after is not None and sent >= stop_after:
            while True:  # hold the call open until we are killed
                time.sleep(1)
        yield pb.UploadPackRequest(chunk=data[i:i + CHUNK])
        sent += 1
        if report:
            report(sent)
        if pause:
            time.sleep(pause)


def child_upload(args):
    """Runs in a child process: uploads FILE slowly, printing each chunk sent; the parent kills it."""
    sys.path.insert(0, args.pb)
    from skillpack.v1 import admin_pb2 as apb
    addr, token, path = args.child_upload
    data = open(path, "rb").read()
    channel = grpc.insecure_channel(addr)

    def report(n):
        print(n, flush=True)

    call = channel.stream_unary("/skillpack.v1.Admin/UploadPack", request_serializer=apb.UploadPackRequest.SerializeToString,
                                response_deserializer=apb.UploadPackResponse.FromString)
    n = (len(data) + CHUNK - 1) // CHUNK
    call(upload_requests(apb, "soak-killed", data, report=report, stop_after=max(1, n // 2)),
         metadata=[("authorization", "Bearer " + token)], timeout=120)


class Soak:
    def __init__(self, args):
        self.a = args
        sys.path.insert(0, args.pb)
        from skillpack.v1 import admin_pb2, inference_pb2
        self.ipb, self.apb = inference_pb2, admin_pb2
        self.lock = threading.Lock()
        self.client = collections.Counter()  # (method, code) -> calls; code as the server's label
        self.kinds = collections.Counter()   # what the workers did
        self.violations = []
        self.rss = []  # (seconds since start, kB)
        self.stop = threading.Event()
        self.token = "soak-" + os.urandom(8).hex()
        self.store = os.path.join(args.work, "packs")
        self.pack_bytes = open(args.pack, "rb").read()
        self.foreign_bytes = open(args.foreign_pack, "rb").read()

    # ---- bookkeeping
    def count(self, method, code):
        with self.lock:
            self.client[(method, code)] += 1

    def kind(self, what):
        with self.lock:
            self.kinds[what] += 1

    def violate(self, what):
        with self.lock:
            if len(self.violations) < 200:
                self.violations.append(what)
        print("soak: VIOLATION: " + what, file=sys.stderr, flush=True)

    # ---- server
    def start_server(self):
        token_file = os.path.join(self.a.work, "admin.token")
        with open(token_file, "w") as f:
            f.write(self.token + "\n")
        self.server_log = open(os.path.join(self.a.work, "server.log"), "w")
        self.server = subprocess.Popen(
            [os.path.join(self.a.build, "server", "skillpack-server"), "--model", self.a.model, "--packs", self.store,
             "--grpc-address", "127.0.0.1", "--grpc-port", "0", "--metrics-address", "127.0.0.1",
             "--metrics-port", "0", "--admin-token-file", token_file, "--threads", "1",
             "--max-prompt-bytes", "65536", "--upload-idle-timeout-seconds", "5", "--grace-seconds", "10"],
            stdout=subprocess.PIPE, stderr=self.server_log, text=True)
        line = self.server.stdout.readline()
        m = re.match(r"listening grpc=(\S+) metrics=(\S+)", line)
        if not m:
            raise SystemExit("soak: server did not start: " + line)
        self.grpc_addr, self.metrics_addr = m.group(1), m.group(2)
        self.channel = grpc.insecure_channel(self.grpc_addr)
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.md = [("authorization", "Bearer " + self.token)]

    def alive(self):
        return self.server.poll() is None

    def rss_kb(self):
        try:
            with open(f"/proc/{self.server.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    # ---- workers
    def gen_stub(self, streaming):
        ipb = self.ipb
        if streaming:
            return self.channel.unary_stream("/skillpack.v1.Inference/GenerateStream",
                                             request_serializer=ipb.GenerateRequest.SerializeToString,
                                             response_deserializer=ipb.GenerateStreamResponse.FromString)
        return self.channel.unary_unary("/skillpack.v1.Inference/Generate",
                                        request_serializer=ipb.GenerateRequest.SerializeToString,
                                        response_deserializer=ipb.GenerateResponse.FromString)

    def request(self, rng, max_new, pack=False):
        req = self.ipb.GenerateRequest(prompt=rng.choice(["hello", "sort 3 1 2", "reverse abc", "x" * 200]))
        req.sampling.max_new_tokens = max_new
        req.sampling.temperature = rng.choice([0.0, 0.7, 1.0])
        req.sampling.ignore_eos = True
        req.request_id = "soak-%d" % rng.randrange(1 << 30)
        if pack:
            req.skills.mode = self.ipb.Skills.EXPLICIT
            req.skills.packs.add(name="soak-a")
        else:
            req.skills.mode = self.ipb.Skills.NONE
        return req

    def stream_worker(self, seed):
        rng = random.Random(seed)
        unary, stream = self.gen_stub(False), self.gen_stub(True)
        while not self.stop.is_set():
            action = rng.random()
            pack = self.pack_stored and rng.random() < 0.3
            method = "Generate"
            try:
                if action < 0.25:  # unary, no deadline
                    unary(self.request(rng, rng.randint(1, 24), pack), timeout=None)
                    self.count(method, "OK")
                    self.kind("unary_ok")
                elif action < 0.5:  # stream to the end
                    method = "GenerateStream"
                    chunks = list(stream(self.request(rng, rng.randint(1, 32), pack), timeout=None))
                    if not chunks or chunks[-1].finish_reason == 0:
                        self.violate("stream ended without a final message")
                    self.count(method, "OK")
                    self.kind("stream_ok")
                elif action < 0.7:  # stream cancelled by the client after its first chunk
                    method = "GenerateStream"
                    call = stream(self.request(rng, 700, pack), timeout=None)
                    next(call)
                    call.cancel()
                    try:
                        for _ in call:
                            pass
                    except grpc.RpcError as e:
                        if e.code() != grpc.StatusCode.CANCELLED:
                            raise
                    self.count(method, "CANCELLED")
                    self.kind("stream_cancelled")
                else:  # short deadline, unary or stream
                    streaming = rng.random() < 0.5
                    method = "GenerateStream" if streaming else "Generate"
                    timeout = rng.uniform(0.05, 0.4)
                    req = self.request(rng, rng.choice([4, 200, 700]), pack)
                    if streaming:
                        list(stream(req, timeout=timeout))
                    else:
                        unary(req, timeout=timeout)
                    self.count(method, "OK@deadline")
                    self.kind("deadline_ok")
            except grpc.RpcError as e:
                code = e.code().name
                if code == "DEADLINE_EXCEEDED" and action >= 0.7:
                    self.count(method, "DEADLINE_EXCEEDED@deadline")
                    self.kind("deadline_exceeded")
                else:
                    self.count(method, code)
                    self.violate(f"{method}: unexpected {code}: {e.details()}")
                    time.sleep(0.2)

    def expect(self, method, call, want, what):
        """Runs call(); the outcome must be one of `want` (code names), with a message free of server paths."""
        try:
            call()
            code, details = "OK", ""
        except grpc.RpcError as e:
            code, details = e.code().name, e.details() or ""
        self.count(method, code)
        self.kind("crafted:" + what)
        if code not in want:
            self.violate(f"{what}: got {code} ({details}), want {'/'.join(want)}")
        elif code != "OK" and not details:
            self.violate(f"{what}: {code} with an empty message")
        if self.a.work in details or self.store in details:
            self.violate(f"{what}: message shows a server path: {details}")
        return code

    def bad_requests(self, rng):
        gen = raw_unary(self.channel, "/skillpack.v1.Inference/Generate")
        route = raw_unary(self.channel, "/skillpack.v1.Inference/Route")
        ipb = self.ipb

        def f(num, payload):
            return bytes([num << 3 | 2]) + enc_varint(len(payload)) + payload

        cases = [
            ("Generate", lambda: gen(f(1, b"bad \xff utf8"), timeout=30), ("INVALID_ARGUMENT",), "invalid_utf8_prompt"),
            ("Route", lambda: route(f(1, b"\xc3"), timeout=30), ("INVALID_ARGUMENT",), "invalid_utf8_route"),
            ("Generate", lambda: gen(b"\x0a\x7fshort", timeout=30), ("INVALID_ARGUMENT",), "malformed_bytes"),
        ]

        def typed(req):
            return lambda: gen(req.SerializeToString(), timeout=30)

        r = ipb.GenerateRequest(prompt="x")
        r.sampling.top_p = 5
        cases.append(("Generate", typed(r), ("INVALID_ARGUMENT",), "bad_top_p"))
        r = ipb.GenerateRequest(prompt="x" * 70000)
        cases.append(("Generate", typed(r), ("INVALID_ARGUMENT",), "prompt_too_long"))
        r = ipb.GenerateRequest(prompt="x", request_id="r" * 300)
        cases.append(("Generate", typed(r), ("INVALID_ARGUMENT",), "request_id_too_long"))
        r = ipb.GenerateRequest(prompt="x")
        r.skills.mode = ipb.Skills.EXPLICIT
        r.skills.packs.add(name="no-such-pack")
        cases.append(("Generate", typed(r), ("NOT_FOUND",), "unknown_pack"))
        r = ipb.GenerateRequest(prompt="x")
        r.skills.mode = 7
        cases.append(("Generate", typed(r), ("INVALID_ARGUMENT",), "unknown_mode"))
        r = ipb.GenerateRequest()
        r.chat.messages.add(role="wizard", content="hi")
        cases.append(("Generate", typed(r), ("INVALID_ARGUMENT",), "bad_chat_role"))
        r = ipb.GenerateRequest()
        r.tokens.ids.extend([1, 2, 999999])
        cases.append(("Generate", typed(r), ("INVALID_ARGUMENT",), "token_out_of_range"))
        method, call, want, what = rng.choice(cases)
        self.expect(method, call, want, what)

    def upload(self, name, data, sha=None, total=None):
        apb = self.apb
        call = self.channel.stream_unary("/skillpack.v1.Admin/UploadPack",
                                         request_serializer=apb.UploadPackRequest.SerializeToString,
                                         response_deserializer=apb.UploadPackResponse.FromString)
        return lambda: call(upload_requests(apb, name, data, sha=sha, total=total), metadata=self.md, timeout=60)

    def admin(self, method, req_type, resp_type, req):
        call = self.channel.unary_unary("/skillpack.v1.Admin/" + method, request_serializer=req_type.SerializeToString,
                                        response_deserializer=resp_type.FromString)
        return lambda: call(req, metadata=self.md, timeout=60)

    def crafted_files(self, rng):
        apb = self.apb
        good = self.pack_bytes
        header_len = int.from_bytes(good[:8], "little")
        header = json.loads(good[8:8 + header_len])
        manifest = header["__metadata__"]["manifest"]  # JSON text; nest 100k arrays inside it
        deep_text = manifest.rstrip()[:-1] + ', "deep": ' + "[" * 100000 + "]" * 100000 + "}"
        header2 = dict(header)
        header2["__metadata__"] = dict(header["__metadata__"], manifest=deep_text)
        h2 = json.dumps(header2).encode()
        h2 += b" " * (-len(h2) % 8)
        deep_pack = len(h2).to_bytes(8, "little") + h2 + good[8 + header_len:]
        cases = [
            (self.upload("soak-bad", os.urandom(rng.randint(1, 5000))), ("INVALID_ARGUMENT",), "garbage_pack"),
            (self.upload("soak-a", good[:len(good) // 2]), ("INVALID_ARGUMENT",), "truncated_pack"),
            (self.upload("soak-a", good, sha="0" * 64), ("INVALID_ARGUMENT",), "wrong_sha256"),
            (self.upload("soak-a", good, total=len(good) + 10), ("INVALID_ARGUMENT",), "short_total_size"),
            (self.upload("soak-a", deep_pack), ("INVALID_ARGUMENT",), "deep_json_manifest"),
            (self.upload("soak-foreign", self.foreign_bytes), ("FAILED_PRECONDITION", "INVALID_ARGUMENT"),
             "pack_for_another_base"),
            (self.admin("GetPack", apb.GetPackRequest, apb.GetPackResponse, apb.GetPackRequest(name="../etc")),
             ("INVALID_ARGUMENT", "NOT_FOUND"), "pack_name_traversal"),
            # GetPackRequest{name: "a\xffb"}: raw bytes, protobuf would not encode them.
            (lambda: raw_unary(self.channel, "/skillpack.v1.Admin/GetPack")(b"\x0a\x03a\xffb", metadata=self.md,
                                                                              timeout=60),
             ("INVALID_ARGUMENT",), "admin_invalid_utf8_name"),
        ]
        call, want, what = rng.choice(cases)
        method = "GetPack" if what in ("pack_name_traversal", "admin_invalid_utf8_name") else "UploadPack"
        self.expect(method, call, want, what)

    def killed_upload(self):
        """A child process uploads slowly; SIGKILL once half the chunks are on the wire."""
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--build", "-", "--model", "-",
                                  "--other-model", "-", "--pack", "-", "--foreign-pack", "-", "--work", "-",
                                  "--pb", self.a.pb, "--out", "-", "--child-upload", self.grpc_addr, self.token,
                                  self.a.pack], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        sent = child.stdout.readline()
        if not sent.strip():
            child.kill()
            child.wait()
            self.violate("killed upload: the child sent nothing")
            return
        time.sleep(0.1)  # let the chunk reach the server
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        self.count("UploadPack", "CANCELLED")
        self.kind("upload_killed")

    def admin_worker(self, seed):
        rng = random.Random(seed)
        apb = self.apb
        while not self.stop.is_set():
            action = rng.random()
            if action < 0.35:
                self.bad_requests(rng)
            elif action < 0.55:
                self.crafted_files(rng)
            elif action < 0.75:
                self.killed_upload()
                time.sleep(0.3)  # the server unwinds the cancelled handler just after the client is gone
            else:
                name = "soak-up%d" % rng.randrange(3)
                # The real pack under another name: the manifest names it soak-a, so the header name must be empty
                # or soak-a; other names are refused (INVALID_ARGUMENT), which is a case of its own.
                if rng.random() < 0.5:
                    self.expect("UploadPack", self.upload("soak-a", self.pack_bytes), ("OK",), "upload_ok")
                else:
                    self.expect("UploadPack", self.upload(name, self.pack_bytes), ("INVALID_ARGUMENT",),
                                "upload_name_mismatch")
                self.expect("ListPacks", self.admin("ListPacks", apb.ListPacksRequest, apb.ListPacksResponse,
                                                    apb.ListPacksRequest()), ("OK",), "list_packs")
            time.sleep(0.05)

    def sampler(self, t0):
        while not self.stop.wait(2.0):
            kb = self.rss_kb()
            if kb is None:
                break
            self.rss.append((round(time.time() - t0, 1), kb))
            if not self.alive():
                break

    # ---- metrics
    def scrape(self):
        text = urllib.request.urlopen("http://%s/metrics" % self.metrics_addr, timeout=10).read().decode()
        out = collections.Counter()
        for m in re.finditer(r'^skillpack_requests_total\{method="([^"]+)",code="([^"]+)"\} (\S+)$', text, re.M):
            out[(m.group(1), m.group(2))] = int(float(m.group(3)))
        return out

    def compare(self, server):
        checks = []

        def check(ok, what):
            checks.append({"ok": bool(ok), "check": what})
            if not ok:
                self.violate("metrics: " + what)

        c = self.client
        methods = sorted({m for m, _ in c} | {m for m, _ in server})
        for method in methods:
            codes = {k for m, k in c if m == method} | {k for m, k in server if m == method}
            exact = {k for k in codes if "@" not in k}
            for code in sorted(exact):
                if code == "OK" and method in ("Generate", "GenerateStream"):
                    continue  # checked below with the deadline calls
                if code == "DEADLINE_EXCEEDED" and method in ("Generate", "GenerateStream"):
                    continue
                check(server[(method, code)] == c[(method, code)],
                      f"{method} {code}: server {server[(method, code)]} == client {c[(method, code)]}")
            if method in ("Generate", "GenerateStream"):
                ok_plain, ok_dl = c[(method, "OK")], c[(method, "OK@deadline")]
                de = c[(method, "DEADLINE_EXCEEDED@deadline")]
                s_ok, s_de = server[(method, "OK")], server[(method, "DEADLINE_EXCEEDED")]
                check(s_ok >= ok_plain + ok_dl,
                      f"{method} OK: server {s_ok} >= client {ok_plain} (+{ok_dl} with deadlines)")
                check(s_ok + s_de <= ok_plain + ok_dl + de,
                      f"{method} OK+DEADLINE_EXCEEDED: server {s_ok + s_de} <= client {ok_plain + ok_dl + de}")
        return checks

    # ---- the run
    def run(self):
        os.makedirs(self.a.work, exist_ok=True)
        self.start_server()
        t0 = time.time()
        # One upload first so pack requests have a pack.
        self.pack_stored = False
        self.expect("UploadPack", self.upload("soak-a", self.pack_bytes), ("OK",), "upload_ok")
        self.pack_stored = True
        threads = [threading.Thread(target=self.sampler, args=(t0,), daemon=True)]
        threads += [threading.Thread(target=self.stream_worker, args=(i,), daemon=True) for i in range(self.a.streams)]
        threads += [threading.Thread(target=self.admin_worker, args=(100,), daemon=True)]
        for t in threads:
            t.start()
        while time.time() - t0 < self.a.seconds and self.alive():
            time.sleep(1)
        self.stop.set()
        for t in threads[1:]:
            t.join(timeout=120)
        alive = self.alive()
        if not alive:
            self.violate("server died (exit %s)" % self.server.returncode)
        checks = []
        if alive:
            time.sleep(2)  # cancelled handlers unwind and record their outcome
            server = self.scrape()
            checks = self.compare(server)
        # RSS growth: median of the samples just after warm-up vs of the last 10%.
        warm = self.a.seconds * 0.2
        after = [kb for t, kb in self.rss if t >= warm]
        growth = None
        if len(after) >= 10:
            n = max(3, len(after) // 10)
            first, last = sorted(after[:n])[n // 2], sorted(after[-n:])[n // 2]
            growth = 100.0 * (last - first) / first
            if growth >= self.a.max_rss_growth:
                self.violate("RSS grew %.1f%% after warm-up (%d -> %d kB)" % (growth, first, last))
        else:
            self.violate("too few RSS samples after warm-up: %d" % len(after))
        exit_code = None
        if alive:
            self.server.send_signal(signal.SIGTERM)
            try:
                exit_code = self.server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.server.kill()
                exit_code = "hung on SIGTERM"
            if exit_code != 0:
                self.violate("server exit on SIGTERM: %s" % exit_code)
        self.server_log.flush()
        with open(self.server_log.name, errors="replace") as f:
            protobuf_lines = [line.strip() for line in f if "libprotobuf" in line]
        if protobuf_lines:  # a client must not be able to write lines into the log
            self.violate("%d libprotobuf lines in the server log, e.g. %s" % (len(protobuf_lines), protobuf_lines[0]))
        parts = [os.path.relpath(os.path.join(d, f), self.store) for d, _, fs in os.walk(self.store) for f in fs
                 if ".part" in f or os.path.basename(d) == ".incoming"]
        if parts:
            self.violate("pack store holds upload leftovers: %s" % parts)
        verified = {}
        for f in sorted(os.listdir(self.store)):
            if f.endswith(".skillpack"):
                r = subprocess.run([os.path.join(self.a.build, "cli", "skillpack"), "pack", "verify",
                                    os.path.join(self.store, f), "--base", self.a.model],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                verified[f] = r.returncode == 0
                if r.returncode != 0:
                    self.violate("stored pack %s does not verify: %s" % (f, r.stderr.strip()))
        result = {
            "seconds": round(time.time() - t0, 1),
            "stream_workers": self.a.streams,
            "actions": dict(sorted(self.kinds.items())),
            "client_counts": {f"{m} {k}": v for (m, k), v in sorted(self.client.items())},
            "server_counts": {f"{m} {k}": v for (m, k), v in sorted(server.items())} if alive else None,
            "metrics_checks": checks,
            "rss_kb": self.rss,
            "rss_growth_percent_after_warmup": None if growth is None else round(growth, 2),
            "server_exit_on_sigterm": exit_code,
            "store_files": sorted(os.listdir(self.store)),
            "stored_packs_verified": verified,
            "violations": self.violations,
            "ok": not self.violations,
        }
        with open(self.a.out, "w") as f:
            json.dump(result, f, indent=1)
        print("soak: %s after %.0f s: %d actions, RSS growth %s%%, %d violations (%s)" % (
            "OK" if result["ok"] else "FAILED", result["seconds"], sum(self.kinds.values()),
            result["rss_growth_percent_after_warmup"], len(self.violations), self.a.out))
        return 0 if result["ok"] else 1


def enc_varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


if __name__ == "__main__":
    a = parse_args()
    if a.child_upload:
        child_upload(a)
        sys.exit(0)
    sys.exit(Soak(a).run())

#!/usr/bin/env python3
"""A long PDF through `sift serve` on the embedded model while `/user` is asked beside it:
how long the document takes, how long `/user` waits meanwhile, and the server's peak memory.

    python3 scripts/document-load.py PDF SCHEMA [--sift target/release/sift] [--every 1.0]

Starts `sift serve` (no API settings: the embedded default) with one extractor for SCHEMA
(ExtractBench's `schema_definition` wrapper is unwrapped), posts PDF to its `/document`, and
while that runs asks `/user` the seed's query every `--every` seconds (one at a time). Prints
the document's time, pages and chunks; `/user`'s latency (median, 95th percentile, max, and
alone before the document); and the server's peak RSS (VmHWM) and RSS before and after.
Not part of CI.
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

QUERY = {"query": "Daniel is a 24 year man living in New York City"}


def post(url, body, content_type="application/json", timeout=3600):
    req = urllib.request.Request(url, data=body, headers={"content-type": content_type})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


def rss(pid):
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields.get("VmRSS", "?"), fields.get("VmHWM", "?")


def main():
    here = pathlib.Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser()
    ap.add_argument("pdf")
    ap.add_argument("schema")
    ap.add_argument("--sift", default=str(here / "target/release/sift"))
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--port", type=int, default=18111)
    args = ap.parse_args()
    schema = json.loads(pathlib.Path(args.schema).read_text())
    if "type" not in schema and "schema_definition" in schema:
        schema = schema["schema_definition"]
    work = pathlib.Path(tempfile.mkdtemp())
    (work / "schema.json").write_text(json.dumps(schema))
    (work / "sift.toml").write_text('[extractors.doc]\nschema = "schema.json"\n')
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "SIFT_"))}
    server = subprocess.Popen(
        [args.sift, "serve", "--config", str(work / "sift.toml"), "--port", str(args.port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        alone = []
        for _ in range(5):
            t = time.monotonic()
            post(base + "/user", json.dumps(QUERY).encode())
            alone.append(time.monotonic() - t)
        before = rss(server.pid)
        result = {}

        def document():
            t = time.monotonic()
            try:
                status, body = post(base + "/v1/extractors/doc/document", pathlib.Path(args.pdf).read_bytes(), "application/pdf")
                result["status"] = status
                result["body"] = json.loads(body)
            except urllib.error.HTTPError as e:
                result["status"] = e.code
                result["body"] = json.loads(e.read() or b"{}")
            result["seconds"] = time.monotonic() - t

        runner = threading.Thread(target=document)
        runner.start()
        beside = []
        while runner.is_alive():
            t = time.monotonic()
            post(base + "/user", json.dumps(QUERY).encode())
            beside.append(time.monotonic() - t)
            time.sleep(max(0.0, args.every - (time.monotonic() - t)))
        runner.join()
        after, peak = rss(server.pid)
        body = result.get("body", {})
        doc = body.get("document", {})
        print(f"document: HTTP {result.get('status')}, {result.get('seconds', 0):.1f} s, "
              f"{doc.get('pages', '?')} pages, {len(doc.get('chunks', []))} chunks, "
              f"{len(body.get('failed_chunks', []))} failed chunks, {len(body.get('conflicts', []))} conflicts")
        if result.get("status") != 200:
            print("  detail:", json.dumps(body)[:400])
        for f in body.get("failed_chunks", []):
            print(f"  chunk {f['chunk']} (pages {f['pages'][0]}-{f['pages'][1]}) failed: {f['kind']}: {f['message'][:160]}")
        beside.sort()
        p95 = beside[min(len(beside) - 1, int(len(beside) * 0.95))] if beside else 0
        print(f"/user alone: median {statistics.median(alone):.2f} s")
        if beside:
            print(f"/user beside the document ({len(beside)} asked): median {statistics.median(beside):.2f} s, "
                  f"p95 {p95:.2f} s, max {beside[-1]:.2f} s")
        print(f"server RSS before {before[0]}, after {after}, peak {peak}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())

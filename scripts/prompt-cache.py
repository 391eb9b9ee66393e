#!/usr/bin/env python3
"""How much of each example extractor's Anthropic request later requests read from the
prompt cache, measured on the requests sift really sends.

A stub of Anthropic's Messages API (127.0.0.1) records what `sift extract` sends for each of
examples/sift.toml's extractors, first asked and once re-asked (the stub's first answer
breaks the schema). For each request: its size, and the size of the prefix up to its last
`cache_control` breakpoint (tools, system prompt, few-shot examples; on a re-ask, the
conversation so far), in bytes and in estimated tokens (bytes / 4). Anthropic caches a prefix
only from 1024 tokens (2048 on Haiku); the cost column is what 1,000 requests of the first
ask cost relative to no caching, cache writes at 1.25x and reads at 0.1x of the input price,
when the prefix is long enough, else 1.0.

    python3 scripts/prompt-cache.py [path/to/sift]
"""
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIFT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "sift")
seen = []


def bad_answer(body):
    """A tool call that breaks the schema (a required field missing), to get a re-ask."""
    tool = body.get("tools", [{}])[0].get("name", "Output")
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "tool_use", "id": "toolu_1", "name": tool, "input": {}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}}


class Stub(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        seen.append(body)
        data = json.dumps(bad_answer(body)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def prefix_bytes(body):
    """Bytes of the request up to and including the last block marked for the cache, in
    Anthropic's order: tools, system, messages."""
    parts = [("tools", t) for t in body.get("tools", [])]
    parts += [("system", b) for b in body.get("system", [])]
    for m in body.get("messages", []):
        parts += [("message", b) for b in m["content"]]
    size, cached = 0, 0
    for _, block in parts:
        size += len(json.dumps(block))
        if "cache_control" in block:
            cached = size
    return cached, size


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SIFT_"))}
    env.update(ANTHROPIC_BASE_URL=base, ANTHROPIC_API_KEY="sk-ant-measure")
    print("| extractor | request | bytes | cached prefix | share | est. tokens cached | cost of 1,000 first asks |")
    print("|---|---|---|---|---|---|---|")
    runs = [(n, os.path.join(ROOT, "examples", "sift.toml"),
             open(os.path.join(ROOT, "examples", "texts", f"{n}.txt")).read())
            for n in ["invoice", "contact", "events"]]
    # A schema of the size real document work uses: ExtractBench's resume schema (10 KB).
    resume = os.path.join(ROOT, "..", "shared", "data", "extractbench", "hiring", "resume", "resume-schema.json")
    if os.path.exists(resume):
        import tempfile
        folder = tempfile.mkdtemp()
        config = os.path.join(folder, "sift.toml")
        with open(config, "w") as f:
            f.write(f'[extractors.resume]\nschema = {json.dumps(os.path.abspath(resume))}\n'
                    'system = "You read resumes and copy their facts exactly."\n'
                    'prompt = "Extract the resume below.\\n\\n{{ text }}"\n')
        runs.append(("resume (ExtractBench schema)", config,
                     "Ada Lovelace. Analyst, Babbage & Co, 1842-1843. Mathematics, tutored by De Morgan."))
    for name, config, text in runs:
        seen.clear()
        extractor = name.split(" ")[0]
        done = subprocess.run([SIFT, "extract", "--config", config, extractor, text, "--max-retries", "1"],
                              env=env, capture_output=True, timeout=120)
        if not seen:
            print(f"| {name} | no request sent: {done.stderr.decode()[-300:]!r} |")
        for i, body in enumerate(seen[:2]):
            cached, size = prefix_bytes(body)
            tokens = cached // 4
            share = cached / size if size else 0
            if i == 0:
                if tokens >= 1024:
                    n = 1000
                    cost = (cached * 1.25 + (n - 1) * cached * 0.1 + n * (size - cached)) / (n * size)
                    cost_text = f"{cost:.2f}x"
                else:
                    cost_text = f"1.00x (prefix under 1024 tokens: not cached)"
            else:
                cost_text = ""
            kind = "first ask" if i == 0 else "re-ask"
            print(f"| {name} | {kind} | {size} | {cached} | {share:.0%} | {tokens} | {cost_text} |")
    server.shutdown()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Throughput and latency of `sift serve` on the embedded model against llama.cpp's own
llama-server on the same GGUF, with the seed's queries. Run by scripts/local-bench.sh, which
starts both servers; this script only asks them.

    local_bench.py --sift URL --llama URL [--rounds N] [--only sift|llama]

Each figure is the median of --rounds runs (wall time). Asked of both: 8 queries one by one,
8 and 16 at once. Of sift also: one /many-users with 8 and 16 queries, and /user's warm
latency. Of llama-server, the same messages sift sends (the instruction, then the
extractor's prompt) and a json_schema response format.
"""

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

# The system prompt sift-local adds to structured requests, and the built-in extractor's prompt.
INSTRUCTION = (
    "Extract the information from the user's text. Reply in JSON, using only what the text says."
)
PROMPT = "Extract: `{}`"
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
QUERIES = [
    "Daniel is a 24 year man living in New York City",
    "Daniel is a 34 year man in New York City",
    "Sarah is a 20 year old living in Tokyo",
    "Jeffrey is 55 and lives in Paris",
    "Maria is 31, lives in Lisbon and loves chess",
    "Bob, 45, from Leeds",
    "Aiko is a 28 year old engineer in Osaka",
    "Tom turned 67 last week",
    "Priya is 39 and teaches in Mumbai",
    "Lars is a 50 year old fisherman from Bergen",
    "Chen is 22 and studies in Shanghai",
    "Fatima, aged 41, works in Cairo",
    "Olga is 63 and lives in Kyiv",
    "Diego is a 19 year old student in Lima",
    "Grace is 27 and lives in Dublin",
    "Kwame is 36 and runs a shop in Accra",
]


def sift_user(url, query):
    r = requests.post(f"{url}/user", json={"query": query}, timeout=600)
    r.raise_for_status()
    return r.json()


def sift_many(url, queries):
    r = requests.post(f"{url}/many-users", json={"queries": queries}, timeout=600)
    r.raise_for_status()
    return r.json()


def llama_user(url, query):
    body = {
        "messages": [
            {"role": "system", "content": INSTRUCTION},
            {"role": "user", "content": PROMPT.format(query)},
        ],
        "temperature": 0,
        "max_tokens": 512,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "UserDetail", "schema": SCHEMA, "strict": True},
        },
    }
    r = requests.post(f"{url}/v1/chat/completions", json=body, timeout=600)
    r.raise_for_status()
    return json.loads(r.json()["choices"][0]["message"]["content"])


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def one_by_one(ask, queries):
    return timed(lambda: [ask(q) for q in queries])


def at_once(ask, queries):
    with ThreadPoolExecutor(len(queries)) as pool:
        return timed(lambda: list(pool.map(ask, queries)))


def median_of(rounds, run):
    times, out = [], None
    for _ in range(rounds):
        t, out = run()
        times.append(t)
    return statistics.median(times), min(times), max(times), out


def correct(answers, queries):
    """Answers whose age is the number in the query (the name is checked by sift eval)."""
    ok = 0
    for a, q in zip(answers, queries):
        if isinstance(a, dict) and str(a.get("age")) in q:
            ok += 1
    return ok


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sift")
    p.add_argument("--llama")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    results = {}
    targets = []
    if args.llama:
        targets.append(("llama-server", lambda q: llama_user(args.llama, q)))
    if args.sift:
        targets.append(("sift", lambda q: sift_user(args.sift, q)))
    for name, ask in targets:
        ask(QUERIES[0])  # warm up
        for label, n, run in [
            ("8 one by one", 8, one_by_one),
            ("8 at once", 8, at_once),
            ("16 at once", 16, at_once),
        ]:
            qs = QUERIES[:n]
            med, lo, hi, out = median_of(args.rounds, lambda: run(ask, qs))
            results[f"{name}: {label}"] = {
                "median_s": med, "min_s": lo, "max_s": hi,
                "queries_per_s": n / med, "ages_right": correct(out, qs), "n": n,
            }
    if args.sift:
        for n in (8, 16):
            qs = QUERIES[:n]
            med, lo, hi, out = median_of(args.rounds, lambda: timed(lambda: sift_many(args.sift, qs)))
            results[f"sift: /many-users {n}"] = {
                "median_s": med, "min_s": lo, "max_s": hi,
                "queries_per_s": n / med, "ages_right": correct(out, qs), "n": n,
            }
        lat = []
        for _ in range(max(5, args.rounds * 4)):
            t, _ = timed(lambda: sift_user(args.sift, QUERIES[0]))
            lat.append(t)
        results["sift: /user warm"] = {"median_s": statistics.median(lat), "min_s": min(lat), "max_s": max(lat)}
    if args.llama:
        lat = []
        for _ in range(max(5, args.rounds * 4)):
            t, _ = timed(lambda: llama_user(args.llama, QUERIES[0]))
            lat.append(t)
        results["llama-server: one query warm"] = {"median_s": statistics.median(lat), "min_s": min(lat), "max_s": max(lat)}
    width = max(len(k) for k in results)
    for k, v in results.items():
        extra = ""
        if "queries_per_s" in v:
            extra = f"  {v['queries_per_s']:.2f} queries/s  ages right {v['ages_right']}/{v['n']}"
        print(f"{k:<{width}}  median {v['median_s']:.3f} s  (min {v['min_s']:.3f}, max {v['max_s']:.3f}){extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

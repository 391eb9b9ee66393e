#!/usr/bin/env python3
"""Measures how many real-world JSON Schemas a running `sift serve` serves through
`POST /v1/extract`: per set (subfolder), how many are answered with a value that fits the
schema (checked here again, with Python's `jsonschema`), how many end with a clear token-limit
error, how many are refused with a 4xx naming the feature, and how many fail otherwise.

    sift serve --port 8000 &            # the embedded model: no OPENAI_* variables set
    python3 scripts/jsonschemabench.py ../shared/data/jsonschemabench --url http://127.0.0.1:8000

Prints a Markdown table, then one line per schema not answered. `--json FILE` also writes
every outcome; `--rerun FILE` asks again only the schemas such a file records as not answered
(after a change that can only affect those, such as the answer's token limit). `--instruction`
picks the text sent with each schema: this script's (`complete`, the default) or the benchmark's
own (`benchmark`).
"""

import argparse
import concurrent.futures
import json
import pathlib
import sys
import time
import urllib.error
import urllib.request

try:
    import jsonschema
except ImportError:  # the server's own validation still counts; say so
    jsonschema = None

# What the request's text asks for. `complete` is this script's own wording; `benchmark` is
# JSONSchemaBench's instruction (Geng et al. 2025, as openbench and the paper's harness send it),
# which asks for a valid instance and nothing more.
INSTRUCTIONS = {
    "complete": (
        "Write one realistic, complete example record of this kind, inventing plausible values "
        "for its fields."
    ),
    "benchmark": "Generate a valid JSON object that matches the schema below.",
}


def post(url, body, timeout):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (TimeoutError, urllib.error.URLError, ConnectionError) as e:
        # The client gave up (or the connection broke): counted as a failure, not a crash.
        return 0, json.dumps({"detail": {"kind": "client_timeout", "message": str(e)}}).encode()


def classify(schema, status, raw):
    try:
        body = json.loads(raw)
    except ValueError:
        return "failed", f"{status}: not JSON: {raw[:200]!r}"
    if status == 200:
        if jsonschema is not None:
            try:
                cls = jsonschema.validators.validator_for(schema)
                cls(schema, format_checker=None).validate(body)
            except jsonschema.ValidationError as e:
                return "invalid", f"answer fails its schema: {e.message[:200]}"
            except Exception as e:  # a schema Python's validator cannot take
                return "answered", f"(not re-checked: {type(e).__name__})"
        return "answered", ""
    detail = body.get("detail") if isinstance(body, dict) else None
    if status == 422 and isinstance(detail, dict) and detail.get("kind") == "token_limit":
        return "token_limit", detail.get("message", "")
    if status == 422 and isinstance(detail, list) and detail:
        first = detail[0]
        return "refused", f"{first.get('type')} at {first.get('loc')}: {first.get('msg', '')[:200]}"
    message = detail.get("message", "") if isinstance(detail, dict) else str(detail)
    return ("server_error" if status >= 500 else "failed"), f"{status}: {message[:300]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=pathlib.Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--only", help="only sets whose name contains this")
    parser.add_argument("--rerun", type=pathlib.Path,
                        help="only the schemas a previous run's --json FILE did not answer")
    parser.add_argument("--instruction", choices=sorted(INSTRUCTIONS), default="complete",
                        help="the text sent: this script's own (complete) or JSONSchemaBench's")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="requests in flight at once (the embedded model batches them)")
    args = parser.parse_args()

    sets = sorted(p for p in args.root.iterdir() if p.is_dir())
    paths = [
        (folder, path)
        for folder in sets
        if not (args.only and args.only not in folder.name)
        for path in sorted(folder.glob("*.json"))
    ]

    if args.rerun:
        missed = {(o["set"], o["schema"]) for o in json.loads(args.rerun.read_text())
                  if o["outcome"] != "answered"}
        paths = [(f, p) for f, p in paths if (f.name, p.name) in missed]

    def one(item):
        folder, path = item
        schema = json.loads(path.read_text())
        started = time.monotonic()
        status, raw = post(
            f"{args.url}/v1/extract",
            # The text asks for a made-up record: nothing in it is to be copied, so no
            # value is held to it.
            {"schema": schema, "text": INSTRUCTIONS[args.instruction], "grounding": {"*": "free"}},
            args.timeout,
        )
        outcome, note = classify(schema, status, raw)
        took = time.monotonic() - started
        print(f"{folder.name}/{path.name}: {outcome} {status} {took:.1f}s {note}",
              file=sys.stderr, flush=True)
        return {"set": folder.name, "schema": path.name, "status": status,
                "outcome": outcome, "note": note, "seconds": round(took, 2)}

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(args.concurrency, 1)) as pool:
        outcomes = list(pool.map(one, paths))

    kinds = ["answered", "token_limit", "refused", "invalid", "failed", "server_error"]
    print("| set | schemas | answered, valid | token limit | served | refused (4xx, feature named) | other failures | 5xx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    by_set = {}
    for o in outcomes:
        by_set.setdefault(o["set"], []).append(o)
    by_set["all"] = outcomes
    for name, rows in by_set.items():
        n = {k: sum(1 for r in rows if r["outcome"] == k) for k in kinds}
        served = n["answered"] + n["token_limit"]
        print(f"| {name} | {len(rows)} | {n['answered']} | {n['token_limit']} | "
              f"{served} ({100 * served / max(len(rows), 1):.1f}%) | {n['refused']} | "
              f"{n['invalid'] + n['failed']} | {n['server_error']} |")
    print()
    for o in outcomes:
        if o["outcome"] not in ("answered",):
            print(f"- {o['set']}/{o['schema']}: {o['outcome']} ({o['status']}) {o['note']}")
    if jsonschema is None:
        print("\n(python jsonschema not installed: answers were not re-checked here)")
    if args.json:
        args.json.write_text(json.dumps(outcomes, indent=1))


if __name__ == "__main__":
    main()

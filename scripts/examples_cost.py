#!/usr/bin/env python3
"""What worked examples cost per request on a running `sift serve`: the same texts sent to an
extractor with examples and to the same extractor without, one after another, printing per
request the wall time, the input tokens and how many of them the server had kept (read from
the `sift-*` usage headers), then the medians after the first request (once the examples are
kept as a shared prefix).

    sift serve --port 8000 --config examples/sift.toml &     # embedded model
    python3 scripts/examples_cost.py --url http://127.0.0.1:8000 contact contact_plain

The second extractor is the first without its examples (declare it in the config).
"""

import argparse
import json
import statistics
import time
import urllib.request

TEXTS = [
    "Reach Maria Keller at maria.keller@alpenlicht.ch or +41 44 555 12 34 (Zurich office).",
    "For orders write to Acme Widgets Inc., sales@acme-widgets.com, phone 555-0142, Denver.",
    "Hi, it's Tom Reilly from Galway, my number is 087 123 4567.",
    "Questions? Contact Bluefin Analytics (info@bluefin.io).",
    "Call Grace O'Neill on 021 455 7788 any time after 6pm.",
    "Bookings: Casa Azul Guesthouse, Oaxaca. WhatsApp +52 951 123 4567.",
    "RSVP to Hannah Schmidt by Friday.",
    "Kontakt: Stadtwerke Leipzig GmbH, Kundenservice 0341 121-3333.",
]


def run(url, name):
    rows = []
    for text in TEXTS:
        body = json.dumps({"text": text}).encode()
        request = urllib.request.Request(
            f"{url}/v1/extractors/{name}",
            data=body,
            headers={"content-type": "application/json"},
        )
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=300) as response:
            value = json.loads(response.read())
            headers = response.headers
        took = time.perf_counter() - start
        rows.append(
            {
                "seconds": took,
                "input": int(headers.get("sift-input-tokens", 0)),
                "cached": int(headers.get("sift-cached-input-tokens", 0)),
                "output": int(headers.get("sift-output-tokens", 0)),
                "value": value,
            }
        )
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("with_examples")
    parser.add_argument("without")
    args = parser.parse_args()
    print("| extractor | request | seconds | input tokens | kept | output tokens |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for name in (args.without, args.with_examples):
        rows = run(args.url, name)
        for i, r in enumerate(rows):
            print(
                f"| {name} | {i + 1} | {r['seconds']:.2f} | {r['input']} | {r['cached']} | {r['output']} |"
            )
        later = rows[1:]
        summary[name] = (
            statistics.median(r["seconds"] for r in later),
            statistics.median(r["input"] - r["cached"] for r in later),
        )
    print()
    for name, (seconds, fresh) in summary.items():
        print(f"{name}: median {seconds:.2f} s per request after the first, {fresh} input tokens read")


if __name__ == "__main__":
    main()

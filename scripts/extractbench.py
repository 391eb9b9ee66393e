#!/usr/bin/env python3
"""ExtractBench's documents through `sift eval`, on whatever provider the environment picks
(the embedded default with no API settings), each type twice: the PDFs as sift reads them,
and the same PDFs read by poppler's `pdftotext` and fed as text (the reader's effect).

    python3 scripts/extractbench.py [DATA] [--sift target/release/sift] [--out DIR]
        [--types resume,swimming] [--readers sift,pdftotext]

DATA defaults to ../shared/data/extractbench. Prints one Markdown table: per type and reader,
the documents, those answered with schema-valid output, the failures by kind, field F1 and
recall, exact matches, and seconds per page. Needs `pdftotext` (Debian's poppler-utils).
Not part of CI: it takes minutes.
"""
import argparse
import collections
import json
import pathlib
import shutil
import subprocess
import sys
import time


def pages(pdf: pathlib.Path) -> int:
    out = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Pages:"):
            return int(line.split()[1])
    return 1


def run_eval(sift, name, folder, schema, report, extra_env=None):
    started = time.monotonic()
    proc = subprocess.run(
        [sift, "eval", name, str(folder), "--schema", str(schema), "--report", str(report)],
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - started
    if not report.exists():
        print(f"{name}: sift eval failed: {proc.stderr.strip()[:500]}", file=sys.stderr)
        return None, took
    return json.loads(report.read_text()), took


def main():
    here = pathlib.Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=str(here.parent / "shared/data/extractbench"))
    ap.add_argument("--sift", default=str(here / "target/release/sift"))
    ap.add_argument("--out", default=str(here / "target/extractbench"))
    ap.add_argument("--types", help="comma-separated types to run (resume,swimming,...); default all")
    ap.add_argument("--readers", default="sift,pdftotext", help="sift, pdftotext or both")
    args = ap.parse_args()
    only = set(args.types.split(",")) if args.types else None
    readers = set(args.readers.split(","))
    data = pathlib.Path(args.data)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for schema in sorted(data.glob("*/*/*-schema.json")):
        folder = schema.parent
        kind = schema.name.removesuffix("-schema.json")
        if only and kind not in only:
            continue
        pdfs = sorted(folder.glob("*.pdf"))
        n_pages = sum(pages(p) for p in pdfs)
        # The same documents as pdftotext reads them, beside their gold.
        text_dir = out / f"{kind}-pdftotext"
        shutil.rmtree(text_dir, ignore_errors=True)
        text_dir.mkdir(parents=True)
        for pdf in pdfs:
            subprocess.run(["pdftotext", str(pdf), str(text_dir / (pdf.stem + ".txt"))], check=True)
            shutil.copy(pdf.with_name(pdf.stem + ".gold.json"), text_dir)
        chosen = [(n, s) for n, s in (("sift (pdf-extract)", folder), ("pdftotext", text_dir)) if n.split()[0] in readers]
        for reader, source in chosen:
            report_path = out / f"{kind}-{'sift' if source == folder else 'pdftotext'}.json"
            report_path.unlink(missing_ok=True)
            report, took = run_eval(args.sift, kind, source, schema, report_path)
            if report is None:
                rows.append((kind, reader, len(pdfs), "-", "eval failed", "-", "-", "-", f"{took / max(n_pages, 1):.2f}"))
                continue
            failures = collections.Counter(f["kind"] for f in report["failures"])
            valid = report["examples"] - len(report["failures"])
            rows.append((
                kind,
                reader,
                report["examples"],
                valid,
                ", ".join(f"{k} {v}" for k, v in sorted(failures.items())) or "-",
                f"{report['all']['f1']:.3f}",
                f"{report['all']['recall']:.3f}",
                f"{report['exact']}/{report['examples']}",
                f"{took / max(n_pages, 1):.2f}",
            ))
    print("| type | reader | documents | schema-valid | failures | field F1 | recall | exact | s/page |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()

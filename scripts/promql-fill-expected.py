#!/usr/bin/env python3
"""Fill the expected samples of promtool PromQL test files from promtool.

Usage: scripts/promql-fill-expected.py DRAFT.yml... OUTDIR

Each draft is a promtool rule unit-test file whose `promql_expr_test`s need
no `exp_samples`. This runs `promtool test rules` (Prometheus 2.42) on it
with every expectation empty, reads what promtool got, and writes the file
to OUTDIR with those samples as the expectations, so that the files under
tests/promql/ state what Prometheus computes, not what weir computes. The
draft's leading `#` comment lines are kept. A result promtool prints as NaN
can never pass promtool's exact comparison: such tests are reported and
left out. The written files are then checked with promtool again.
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml

PROMTOOL = "/usr/bin/promtool"
FAIL_RE = re.compile(
    r'expr: (".*?(?<!\\)"), time: (\S+?),\n\s+exp: .*\n\s+got: (.*)\n'
)
SAMPLE_RE = re.compile(r'(\{[^}]*\}) (\S+?)(?:, |$)')
NAME_RE = re.compile(r'^__name__="([a-zA-Z_:][a-zA-Z0-9_:]*)"(?:, )?')


def go_unquote(s):
    return yaml.safe_load(s)  # a Go %q string is a valid YAML double-quoted one


def labels_text(lbls):
    """{__name__="x", a="b"} -> x{a="b"}"""
    inner = lbls[1:-1]
    m = NAME_RE.match(inner)
    if m:
        rest = inner[m.end():]
        return m.group(1) + ("{" + rest + "}" if rest else "")
    return lbls


def value_text(v):
    f = float(v)
    if f == float("inf"):
        return ".inf"
    if f == float("-inf"):
        return "-.inf"
    r = repr(f)
    if r.endswith(".0"):
        r = r[:-2]
    return r


def run(path):
    p = subprocess.run([PROMTOOL, "test", "rules", path], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def q(s):
    return "'" + s.replace("'", "''") + "'"


def dump(header, doc):
    out = list(header)
    out.append("evaluation_interval: %s" % doc.get("evaluation_interval", "1m"))
    out.append("tests:")
    for g in doc["tests"]:
        out.append("  - interval: %s" % g.get("interval", "1m"))
        out.append("    input_series:")
        for s in g["input_series"]:
            out.append("      - series: %s" % q(s["series"]))
            out.append("        values: %s" % q(str(s["values"])))
        out.append("    promql_expr_test:")
        for t in g["promql_expr_test"]:
            out.append("      - expr: %s" % q(t["expr"]))
            out.append("        eval_time: %s" % t["eval_time"])
            if not t.get("exp_samples"):
                out.append("        exp_samples: []")
                continue
            out.append("        exp_samples:")
            for s in t["exp_samples"]:
                out.append("          - labels: %s" % q(s["labels"]))
                out.append("            value: %s" % s["value"])
    return "\n".join(out) + "\n"


def fill(draft, outdir):
    text = open(draft).read()
    header = [l for l in text.splitlines() if l.startswith("#")]
    header = header[: next((i for i, l in enumerate(text.splitlines()) if not l.startswith("#")), 0)]
    doc = yaml.safe_load(text)
    for g in doc["tests"]:
        for t in g["promql_expr_test"]:
            t["exp_samples"] = []
            t["eval_time"] = str(t["eval_time"])
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as tmp:
        tmp.write(dump(header, doc))
    rc, out = run(tmp.name)
    os.unlink(tmp.name)
    got = {}
    for m in FAIL_RE.finditer(out):
        got[(go_unquote(m.group(1)), m.group(2))] = m.group(3)
    if rc != 0 and not got:
        sys.exit("%s: promtool failed:\n%s" % (draft, out))
    for g in doc["tests"]:
        keep = []
        for t in g["promql_expr_test"]:
            res = got.get((t["expr"], t["eval_time"]))
            if res is not None and res != "nil":
                samples = SAMPLE_RE.findall(res)
                if any(v == "NaN" for _, v in samples):
                    print("%s: %s at %s is NaN, left out" % (draft, t["expr"], t["eval_time"]))
                    continue
                t["exp_samples"] = [
                    {"labels": labels_text(l), "value": value_text(v)} for l, v in samples
                ]
            keep.append(t)
        g["promql_expr_test"] = keep
    dst = os.path.join(outdir, os.path.basename(draft))
    with open(dst, "w") as f:
        f.write(dump(header, doc))
    rc, out = run(dst)
    if rc != 0:
        sys.exit("%s: promtool does not accept the filled file:\n%s" % (dst, out))


def main():
    *drafts, outdir = sys.argv[1:]
    for d in drafts:
        fill(d, outdir)


if __name__ == "__main__":
    main()

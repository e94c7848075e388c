#!/usr/bin/env python3
"""Generates tests/templates/*.yml (promtool rule unit tests of alert
templates) and fills their exp_labels/exp_annotations from what promtool
2.42 renders.

    python3 scripts/template_suite.py            # write files, fill from promtool

Each case is one alert rule over its own series `tmpl_value{case=NAME, v=VALUE}`
with value VALUE; tests/templates.rs re-renders every expected annotation
with weir and compares. Expectations are only ever taken from promtool.
"""
import json, os, re, subprocess, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "templates")

def fixture_annotations():
    """The plan's annotation texts, verbatim from the shared fixtures."""
    out = []
    for f in ["alerting_rules.yml", "app-alerting-rules.yml"]:
        p = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures", f)
        for line in open(p, encoding="utf-8"):
            m = re.match(r'\s*(summary|description):\s*"(.*)"\s*$', line)
            if m and "{{" in m.group(2):
                out.append(m.group(2))
    return out

def plan_cases():
    labels = {"tool_name": "web_search", "service": "llm", "endpoint": "/api/chat",
              "node_name": "gap_identifier_react", "model": "qwen-max",
              "mount_point": "/data", "instance": "10.0.0.7:8000", "job": "external_apis"}
    values = ["0.16666666666666669", "7.25", "1.2e+06", "0.35", "125", "0.0001", "87.5", "3"]
    cases = []
    for i, text in enumerate(fixture_annotations()):
        cases.append({"name": f"plan{i:02d}", "ann": {"description": text},
                      "labels": labels, "v": values[i % len(values)]})
    return cases

H = ["0", "1", "999", "1000", "1234567", "-1234567", "0.001234", "0.5", "1e-30", "1e30",
     "NaN", "+Inf", "-Inf", "1023", "1024", "1048576", "-2048", "0.75", "59.9", "61",
     "3600", "86400", "90061.5", "-90061", "0.0000123", "-0.25", "12345.678", "1e+06",
     "999999", "1e-05", "0.0001", "100", "1.5", "0.16666666666666669", "1681234567.891"]

def humanize_cases():
    t = ("v={{ $value }} h={{ humanize $value }} h1024={{ humanize1024 $value }} "
         "d={{ humanizeDuration $value }} p={{ humanizePercentage $value }} "
         "ts={{ humanizeTimestamp $value }}")
    return [{"name": f"h{i:02d}", "ann": {"a": t}, "v": v} for i, v in enumerate(H)]

PRINTF = [
    '{{ printf "%.2f" $value }}', '{{ printf "%f" $value }}', '{{ printf "%g" $value }}',
    '{{ printf "%v" $value }}', '{{ printf "%e" $value }}', '{{ printf "%.3e" $value }}',
    '{{ printf "%8.2f|%-8.2f|%08.2f" $value $value $value }}', '{{ printf "%+.1f" $value }}',
    '{{ printf "%d" $value }}', '{{ printf "%s" $value }}', '{{ printf "%q" $labels.instance }}',
    '{{ printf "%x %X %d %5d %-5d| %05d %o %b" 255 255 -42 42 42 42 8 5 }}',
    '{{ printf "%s=%q" "k" "v\\"x" }}', '{{ printf "%10s|%-10s|%.3s" "abc" "abc" "abcdef" }}',
    '{{ printf "%d%%" 50 }}', '{{ printf "%d %d" 1 }}', '{{ printf "%d" 1 2 }}',
    '{{ printf "%x" "hi" }}', '{{ printf "%t %v" true false }}', '{{ printf "%c %q" 65 66 }}',
    '{{ printf "%T %T %T %T" 1 1.5 "s" $labels }}', '{{ printf "%v" $labels }}',
    '{{ printf "%.0f %.1f %.2f" 0.5 0.25 1.005 }}', '{{ printf "%6.2f%%" 12.3456 }}',
    '{{ printf "%.4g|%.2g|%.1g|%.10g" 123456.0 0.000123 9.99 3.14159 }}',
    '{{ printf "%G %E" 1e-7 123.0 }}', '{{ printf "%v %v %v" 1e21 1e20 -0.0 }}',
    '{{ printf "%5.1f|%-7v|%07.2f" -3.14159 1.5 -2.5 }}', '{{ printf "%z" 1 }}',
    '{{ printf "%!" }}', '{{ printf "%s %s" "a" }}', '{{ printf "% d|%+d" 5 5 }}',
    '{{ printf "%#x %#o" 255 8 }}', '{{ printf "%3c|%-3c|" 120 121 }}',
    '{{ printf "%s" nil }}', '{{ printf "%v" (args 1 "a") }}',
]

VALUES = ["0", "1", "-2.5", "999999", "1e+06", "1234567", "0.0001", "1e-05", "0.000123",
          "0.16666666666666669", "1e+21", "123456.7", "5e-324", "NaN", "+Inf", "-Inf",
          "1.7976931348623157e+308", "100", "33.333333333333336", "1.2e+06"]

def value_cases():
    t = "{{ $value }}|{{ .Value }}|{{ printf \"%v\" $value }}|{{ $labels.v }}"
    return [{"name": f"v{i:02d}", "ann": {"a": t}, "v": v} for i, v in enumerate(VALUES)]

def printf_cases():
    out = []
    for i, t in enumerate(PRINTF):
        for j, v in enumerate(["1234.5678", "-0.001", "NaN"] if "$value" in t else ["7"]):
            out.append({"name": f"p{i:02d}_{j}", "ann": {"a": t}, "v": v,
                        "labels": {"instance": "host-1.example.com:9100"}})
    return out

STRINGS = [
    '{{ title "hello wORLD foo-bar_baz 中文 x.y" }}', '{{ toUpper "abc Straße" }}|{{ toLower "ÀBC" }}',
    '{{ $labels.instance | stripPort }}|{{ stripPort "[::1]:80" }}|{{ stripPort "nohost" }}|{{ stripPort "a:b:c" }}',
    '{{ stripDomain "foo.example.com:9090" }}|{{ stripDomain "10.1.2.3:80" }}|{{ stripDomain "bar.baz" }}|{{ stripDomain "[::1]:80" }}',
    '{{ match "^host-[0-9]" $labels.instance }}|{{ match "x+" "abc" }}',
    '{{ reReplaceAll "(.*):(\\\\d+)" "$1 port $2" $labels.instance }}',
    '{{ reReplaceAll "o" "0" "foo boo" }}|{{ reReplaceAll "(?P<h>[a-z]+)-(\\\\d)" "${h}_$2x" "host-1" }}',
    '{{ safeHtml "<b>x</b>" }}|{{ html "<a href=\'x\'>&\\"</a>" }}|{{ urlquery "a b&c=d/é" }}',
    '{{ parseDuration "1h30m" }}|{{ parseDuration "90s" }}|{{ parseDuration "1d" }}|{{ parseDuration "500ms" }}',
    '{{ parseDuration "1x" }}', '{{ graphLink "rate(x[5m]) > 0" }}|{{ tableLink "up == 0" }}',
    '{{ with args 1 "two" 3.5 }}{{ .arg0 }} {{ .arg1 }} {{ .arg2 }} {{ .arg3 }}{{ end }}',
    '{{ print 1 2 "a" "b" 3 }}|{{ println "x" 1 }}|{{ print $value "%" }}',
    '{{ humanize "1234.5" }}|{{ humanize 1000 }}|{{ humanizeDuration "65" }}|{{ humanizePercentage "0.5" }}',
    '{{ len "中文" }}|{{ len $labels }}|{{ index $labels "instance" }}|{{ index $labels "nope" }}.',
    '{{ toUpper $value }}', '{{ humanize $labels }}', '{{ title }}', '{{ len $value }}',
    '{{ index $labels 1 }}', '{{ reReplaceAll "(" "x" "y" }}', '{{ match "(" "y" }}',
    '{{ humanizeTimestamp 1e300 }}', '{{ toTime $value }}', '{{ humanizeTimestamp "x" }}',
]

def strings_cases():
    return [{"name": f"s{i:02d}", "ann": {"a": t}, "v": "1681234567.5",
             "labels": {"instance": "host-1.example.com:9100"}} for i, t in enumerate(STRINGS)]

CONTROL = [
    '{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}',
    '{{ if and (gt $value 1.0) (lt $value 100.0) }}in{{ else }}out{{ end }}|{{ or "" "def" }}|{{ and 1 0 }}|{{ not 0 }}',
    '{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}',
    '{{ range $labels }}[{{ . }}]{{ else }}none{{ end }}|{{ range $externalLabels }}x{{ else }}none{{ end }}',
    '{{ with $labels.instance }}inst={{ . }}{{ else }}noinst{{ end }}|{{ with $labels.nope }}y{{ else }}n{{ end }}',
    '[{{ $labels.nope }}]|{{ .Labels.instance }}|{{ $.Value }}|{{ .Value | humanize }}',
    '{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}',
    'a  {{- " b " -}}  c {{/* comment */}} d {{- /* trimmed */ -}} e',
    '{{ eq $labels.severity "page" "critical" }}|{{ ne 1 2 }}|{{ le 2 2 }}|{{ ge "b" "a" }}|{{ lt 1.5 2.5 }}',
    '{{ $value | printf "%.1f" | printf "[%s]" }}',
    '{{ range $i, $e := $labels }}{{ if eq $i "job" }}{{ break }}{{ end }}{{ $i }} {{ end }}',
    '{{ range $k, $e := $labels }}{{ if eq $k "instance" }}{{ continue }}{{ end }}{{ $k }} {{ end }}',
    '{{ (humanize $value) }}|{{ (printf "%s" "x") | len }}',
    '{{ .ExternalURL }}|{{ $externalURL }}|{{ $externalLabels.region }}|{{ .ExternalLabels }}',
    '{{ $labels }}|{{ . }}', '{{ if $labels.nope }}y{{ else }}n{{ end }}{{ if 0.0 }}y{{ end }}{{ if "0" }}s{{ end }}',
    '{{ .Nope }}', '{{ $labels.instance.x }}', '{{ gt $value 1 }}', '{{ eq 1 "a" }}', '{{ lt true false }}',
    '{{ nil }}', '{{ 3 }} {{ 1.5 }} {{ 1e3 }} {{ 0x1F }} {{ true }} {{ "s" }} {{ `raw\\n` }} {{ \'a\' }}',
    '{{ 1 2 }}', '{{ $value 1 }}', '{{ range $value }}x{{ end }}', '{{ len }}', '{{ not 1 2 }}',
    'line1\nline2 {{ humanize "bad" }}',
]

def control_cases():
    return [{"name": f"c{i:02d}", "ann": {"a": t}, "v": "64.5",
             "labels": {"instance": "web-1:80", "job": "api", "severity": "critical"}}
            for i, t in enumerate(CONTROL)]

LABELS = [
    {"severity": '{{ if gt $value 100.0 }}critical{{ else }}warning{{ end }}', "host": "{{ $labels.instance | stripPort }}"},
    {"summary_value": "{{ $value | humanize }}", "static": "fixed"},
]

def label_cases():
    return [{"name": f"l{i}", "rule_labels": l, "ann": {"a": "{{ $labels.instance }} {{ $value }}"},
             "v": v, "labels": {"instance": "db-2:5432"}}
            for i, (l, v) in enumerate([(LABELS[0], "150"), (LABELS[0], "5"), (LABELS[1], "2048")])]

SUITES = {
    "plan": plan_cases, "values": value_cases, "humanize": humanize_cases, "printf": printf_cases,
    "strings": strings_cases, "control": control_cases, "labels": label_cases,
}

def q(s):
    return json.dumps(s, ensure_ascii=False)

def sel(c):
    lab = dict(c.get("labels", {}))
    lab["case"] = c["name"]
    lab["v"] = c["v"]
    return "tmpl_value{" + ",".join(f'{k}={q(v)}' for k, v in sorted(lab.items())) + "}"

def write(name, cases, got=None):
    rules = ["groups:", f"- name: {name}", "  rules:"]
    for c in cases:
        rules.append(f"  - alert: {c['name']}")
        rules.append(f"    expr: {q('tmpl_value{case=' + q(c['name']) + '}')}")
        if c.get("rule_labels"):
            rules.append("    labels:")
            for k, v in c["rule_labels"].items():
                rules.append(f"      {k}: {q(v)}")
        rules.append("    annotations:")
        for k, v in c["ann"].items():
            rules.append(f"      {k}: {q(v)}")
    open(os.path.join(ROOT, f"{name}.rules.yml"), "w", encoding="utf-8").write("\n".join(rules) + "\n")
    t = ["# Generated by scripts/template_suite.py; expectations are promtool 2.42's output.",
         f"rule_files: [{name}.rules.yml]", "evaluation_interval: 1m", "tests:", "- interval: 1m",
         "  external_labels: {region: eu-west}", "  external_url: http://prom.example.com:9090/prefix/",
         "  input_series:"]
    for c in cases:
        t.append(f"  - series: {q(sel(c))}")
        t.append(f"    values: {q(c['v'] + ' ' + c['v'])}")
    t.append("  alert_rule_test:")
    for c in cases:
        t.append("  - eval_time: 1m")
        t.append(f"    alertname: {c['name']}")
        t.append("    exp_alerts:")
        labels, anns = (got or {}).get(c["name"], ({}, {}))
        labels = {k: v for k, v in labels.items() if k != "alertname"}
        t.append(f"    - exp_labels: {{{', '.join(f'{q(k)}: {q(v)}' for k, v in sorted(labels.items()))}}}")
        t.append(f"      exp_annotations: {{{', '.join(f'{q(k)}: {q(v)}' for k, v in sorted(anns.items()))}}}")
    open(os.path.join(ROOT, f"{name}.yml"), "w", encoding="utf-8").write("\n".join(t) + "\n")

def go_unquote(s, i):
    """Parses a Go-quoted string starting at s[i] == '"'; returns (value, end)."""
    assert s[i] == '"'
    out, i = [], i + 1
    simple = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\\": "\\", '"': '"', "'": "'"}
    raw = bytearray()
    def flush():
        if raw:
            out.append(raw.decode("utf-8", "replace")); raw.clear()
    while s[i] != '"':
        if s[i] == "\\":
            e = s[i + 1]
            if e in simple:
                flush(); out.append(simple[e]); i += 2
            elif e == "x":
                raw.append(int(s[i + 2:i + 4], 16)); i += 4
            elif e == "u":
                flush(); out.append(chr(int(s[i + 2:i + 6], 16))); i += 6
            elif e == "U":
                flush(); out.append(chr(int(s[i + 2:i + 10], 16))); i += 10
            else:
                raise ValueError(s[i:i + 10])
        else:
            flush(); out.append(s[i]); i += 1
    flush()
    return "".join(out), i + 1

def parse_labels(s, i):
    """Parses `{k="v", ...}` at s[i]; returns (dict, end)."""
    assert s[i] == "{", s[i:i + 20]
    i += 1
    d = {}
    while s[i] != "}":
        m = re.compile(r"\s*,?\s*([A-Za-z_][A-Za-z0-9_]*)=").match(s, i)
        k = m.group(1)
        v, i = go_unquote(s, m.end())
        d[k] = v
        while s[i] in " ,":
            i += 1
    return d, i + 1

def promtool_got(path):
    p = subprocess.run(["promtool", "test", "rules", os.path.basename(path)], cwd=ROOT,
                       capture_output=True, text=True)
    text = p.stdout + p.stderr
    got = {}
    for m in re.finditer(r"alertname: (\S+), time: [^,]*, \n", text):
        name = m.group(1)
        g = text.index("got:[", m.end())
        lm = text.index("Labels:", g)
        labels, e = parse_labels(text, lm + len("Labels:"))
        am = text.index("Annotations:", e)
        anns, _ = parse_labels(text, am + len("Annotations:"))
        got[name] = (labels, anns)
    return p.returncode, got, text

def main():
    for name, f in SUITES.items():
        cases = f()
        write(name, cases)
        rc, got, text = promtool_got(os.path.join(ROOT, f"{name}.yml"))
        missing = [c["name"] for c in cases if c["name"] not in got]
        if missing:
            print(f"{name}: no output for {missing}\n{text[:3000]}", file=sys.stderr)
            sys.exit(1)
        write(name, cases, got)
        rc, _, text = promtool_got(os.path.join(ROOT, f"{name}.yml"))
        print(f"{name}: {len(cases)} cases, promtool exit {rc}")
        if rc != 0:
            print(text[:3000], file=sys.stderr)
            sys.exit(1)

if __name__ == "__main__":
    main()

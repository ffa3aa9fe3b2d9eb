#!/usr/bin/env python3
"""Checks that the Grafana dashboard and the alert rules name only metrics
a running shardcast server exports. Called by scripts/check-deploy.sh.

    check_deploy_names.py URL DASHBOARD RULES PROMQL_OUT

URL is the server's /metrics (retried while the server starts); DASHBOARD
the dashboard JSON; RULES the Prometheus rule file; PROMQL_OUT a rule file
written with every dashboard expression as a recording rule (Grafana's
variables replaced), for `promtool check rules` to check their syntax.

The standard library only: the rule file's `expr:` values are read by a
small reader of the one YAML shape alerts.yml uses (`expr: |` blocks or
one-line values).
"""

import json
import re
import sys
import time
import urllib.request

# PromQL words that are not metric names.
KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "Inf", "NaN", "atan2",
}


def scrape(url):
    """The exposition at `url`, waiting up to 10 s for the server."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.read().decode()
        except OSError as e:
            if time.monotonic() > deadline:
                sys.exit(f"cannot scrape {url}: {e}")
            time.sleep(0.1)


def exported(text):
    """Metric names a scrape holds: every family (a histogram with its
    _bucket, _sum and _count series) and every sample's name."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names.update(name + s for s in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][\w:]*", line).group(0))
    return names


def metric_names(expr):
    """The metric names an expression reads (not functions, aggregations,
    label names, keywords or Grafana variables)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\$\{?\w+\}?", "", e)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = []
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)", e):
        name = m.group(1)
        if name in KEYWORDS or e[m.end():].lstrip().startswith("("):
            continue
        names.append(name)
    return names


def dashboard_exprs(dashboard):
    """(where, expression) of every panel target and templating query."""
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            where = node.get("title", where)
            if isinstance(node.get("expr"), str):
                found.append((f"panel {where!r}", node["expr"]))
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    walk(dashboard.get("panels", []), "?")
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        for metric in re.findall(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,", query):
            found.append((f"variable {var.get('name')!r}", metric))
    return found


def rule_exprs(path):
    """(where, expression) of every rule of a rule file."""
    found, lines, i, name = [], open(path).read().splitlines(), 0, "?"
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*-?\s*(alert|record):\s*(\S+)", line)
        if m:
            name = m.group(2)
        m = re.match(r"(\s*)expr:\s*(.*)$", line)
        if m:
            indent, value = len(m.group(1)), m.group(2).strip()
            if value in ("|", ">", "|-", ">-"):
                block = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or
                                          len(lines[i]) - len(lines[i].lstrip()) > indent):
                    block.append(lines[i].strip())
                    i += 1
                found.append((f"rule {name!r}", " ".join(block)))
                continue
            found.append((f"rule {name!r}", value.strip("'\"")))
        i += 1
    return found


def check_dashboard(dashboard):
    """Problems with the dashboard's shape."""
    problems = []
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("no schemaVersion")
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids repeat")
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            continue
        title = panel.get("title", "?")
        if panel.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            problems.append(f"panel {title!r}: datasource is not ${{DS_PROMETHEUS}}")
        if not panel.get("targets"):
            problems.append(f"panel {title!r}: no query")
        if "gridPos" not in panel:
            problems.append(f"panel {title!r}: no gridPos")
    names = [v.get("name") for v in dashboard.get("templating", {}).get("list", [])]
    if "DS_PROMETHEUS" not in names:
        problems.append("no DS_PROMETHEUS datasource variable")
    return problems


def main():
    url, dashboard_path, rules_path, promql_out = sys.argv[1:5]
    names = exported(scrape(url))
    with open(dashboard_path) as f:
        dashboard = json.load(f)
    problems = check_dashboard(dashboard)
    exprs = dashboard_exprs(dashboard) + rule_exprs(rules_path)
    for where, expr in exprs:
        for name in metric_names(expr):
            if name not in names:
                problems.append(f"{where}: {name} is not exported by the server")
    # Every dashboard expression as a recording rule, for promtool.
    with open(promql_out, "w") as out:
        out.write("groups:\n  - name: dashboard\n    rules:\n")
        for n, (where, expr) in enumerate(dashboard_exprs(dashboard)):
            concrete = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
            out.write(f"      - record: dashboard:expr_{n}\n        expr: {json.dumps(concrete)}\n")
    for problem in problems:
        print(f"check-deploy: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"-- {len(exprs)} expressions name only exported metrics ({len(names)} exported)")


if __name__ == "__main__":
    main()

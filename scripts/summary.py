#!/usr/bin/python3
"""Adds up what the test command ran and prints one line:
"N passed, N failed, N skipped", after the skipped tests by name, each
with its reason.

Sources: each meson build's testlog.json (a Criterion suite counts its
individual tests, from the JSON report it wrote beside it), pytest's JUnit
XML files, and plain result files with one "name PASS|FAIL|SKIP" a line.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
failures = []
skips = []  # (test, reason)


def criterion_skips(build, short, report):
    """The skipped tests of a Criterion suite's JSON report, with the
    message each gave (cr_skip_test)."""
    for suite in report.get("test_suites", []):
        for t in suite.get("tests", []):
            if t.get("status") == "SKIPPED":
                msgs = [m for m in t.get("messages", []) if m] or ["(no reason given)"]
                skips.append((f"{build}: {suite.get('name', short)}::{t.get('name')}",
                              "; ".join(msgs)))


def meson_build(build):
    global passed, failed, skipped
    log = os.path.join(build, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        failures.append(f"{build}: no test log (the build or the run failed)")
        failed += 1
        return
    for line in open(log):
        t = json.loads(line)
        name, result = t["name"], t["result"]
        # meson names a test "project:suite / name"; the report uses name.
        short = name.split(" / ")[-1]
        report = os.path.join(build, "tests", f"report-{short}.json")
        if result == "OK" and os.path.exists(report):
            r = json.load(open(report))
            passed += r["passed"]
            failed += r["failed"] + r["errored"]
            skipped += r["skipped"]
            criterion_skips(build, short, r)
        elif result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
            out = (t.get("stdout") or "").strip().splitlines()
            skips.append((f"{build}: {name}", out[-1] if out else "(no reason given)"))
        else:
            if os.path.exists(report):
                r = json.load(open(report))
                passed += r["passed"]
                skipped += r["skipped"]
                failed += max(1, r["failed"] + r["errored"])
            else:
                failed += 1
            failures.append(f"{build}: {name}: {result}")


def junit(path):
    global passed, failed, skipped
    if not os.path.exists(path):
        failures.append(f"{path}: missing (pytest did not run)")
        failed += 1
        return
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        n = int(s.get("tests", 0))
        f = int(s.get("failures", 0)) + int(s.get("errors", 0))
        k = int(s.get("skipped", 0))
        passed += n - f - k
        failed += f
        skipped += k
        if f:
            failures.append(f"{path}: {f} failed")
        for case in s.iter("testcase"):
            sk = case.find("skipped")
            if sk is not None:
                reason = sk.get("message") or (sk.text or "").strip() or "(no reason given)"
                skips.append((f"{os.path.basename(path)}: {case.get('classname')}::"
                              f"{case.get('name')}", reason))


def plain(path):
    global passed, failed, skipped
    for line in open(path):
        parts = line.split()
        if len(parts) < 2:
            continue
        if parts[-1] == "PASS":
            passed += 1
        elif parts[-1] == "SKIP":
            skipped += 1
        else:
            failed += 1
            failures.append(" ".join(parts))


for arg in sys.argv[1:]:
    kind, _, path = arg.partition("=")
    {"meson": meson_build, "junit": junit, "plain": plain}[kind](path)

if skips:
    print(f"skipped ({len(skips)}):")
    for test, reason in skips:
        print(f"  {test}: {reason}")
for f in failures:
    print("FAILED:", f)
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)

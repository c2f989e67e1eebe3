#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Build mailaudit and run the whole test suite; the README's second command.

Installs missing Debian packages (scripts/install-deps), configures and
builds with meson into ./build (or $MAILAUDIT_BUILD_DIR), runs the unit
tests (each prints "N passed, N failed") and the integration tests (real
mailauditd, real Dovecot on loopback), and ends with one line:
"N passed, N failed[, N skipped]".  Exit status 0 only if nothing failed.
Integration tests need root (Dovecot's mail processes switch uid).
"""

import os
import re
import subprocess
import sys
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MAILAUDIT_BUILD_DIR", os.path.join(ROOT, "build"))


def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, **kw)


def build():
    if run([os.path.join(ROOT, "scripts", "install-deps")]).returncode != 0:
        sys.exit("install-deps failed")
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        if run(["meson", "setup", BUILD, ROOT]).returncode != 0:
            sys.exit("meson setup failed")
    if run(["ninja", "-C", BUILD]).returncode != 0:
        sys.exit("build failed")


def unit_tests():
    """Run each unit test binary via meson; sum their closing lines."""
    passed = failed = 0
    res = run(["meson", "test", "-C", BUILD, "--suite", "unit", "-v",
               "--no-rebuild"], capture_output=True, text=True)
    sys.stdout.write(res.stdout[-20000:])
    counted = re.findall(r"^(\d+) passed, (\d+) failed$", res.stdout,
                         re.MULTILINE)
    for p, f in counted:
        passed += int(p)
        failed += int(f)
    # a binary that crashed before printing its line still counts
    crashed = len(re.findall(r"^\s*\d+/\d+ \S+\s+(FAIL|TIMEOUT)", res.stdout,
                             re.MULTILINE))
    if res.returncode != 0 and failed == 0:
        failed += max(crashed, 1)
    return passed, failed


class CountingResult(unittest.TextTestResult):
    pass


def integration_tests():
    here = os.path.join(ROOT, "tests", "integration")
    sys.path.insert(0, here)
    os.environ["MAILAUDIT_BUILD_DIR"] = BUILD
    suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py")
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout,
                                     resultclass=CountingResult)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + \
        len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    return passed, failed, skipped


def fuzz_tests():
    """Each libFuzzer target, run briefly, counts as one test."""
    res = run([os.path.join(ROOT, "tests", "fuzz", "run")],
              capture_output=True, text=True)
    sys.stdout.write(res.stdout)
    sys.stdout.write(res.stderr[-5000:])
    m = re.findall(r"^(\d+) passed, (\d+) failed$", res.stdout, re.MULTILINE)
    if not m:
        return 0, 1
    return int(m[-1][0]), int(m[-1][1])


BANNED = (r"\b(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|strncpy|"
          r"strncat|tmpnam|mktemp|alloca|system)\s*\(")


def style_checks():
    """clang-format, banned functions and man page lint: one test each."""
    files = subprocess.run(["git", "ls-files", "src/*.c", "src/*.h",
                            "tests/*.c", "tests/*.h"], cwd=ROOT,
                           capture_output=True, text=True).stdout.split()
    checks = {
        "clang-format": ["clang-format", "--dry-run", "--Werror"] + files,
        "banned functions": ["git", "grep", "-nE", BANNED, "--", "*.c",
                             "*.h"],
        "mandoc lint": ["sh", "-c", "mandoc -Tlint -W warning man/*.[0-9]"],
    }
    passed = failed = 0
    for name, cmd in checks.items():
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        # git grep succeeds when it finds something: that is the failure
        ok = res.returncode != 0 if name == "banned functions" else \
            res.returncode == 0 and not res.stderr.strip()
        print("%s style: %s" % ("ok  " if ok else "FAIL", name))
        if not ok:
            sys.stdout.write((res.stdout + res.stderr)[-3000:])
            failed += 1
        else:
            passed += 1
    return passed, failed


def main():
    t0 = time.monotonic()
    build()
    up, uf = unit_tests()
    fp, ff = fuzz_tests()
    sp, sf = style_checks()
    fp += sp
    ff += sf
    ip, ifail, isk = integration_tests()
    print("unit: %d passed, %d failed; fuzz+style: %d passed, %d failed; "
          "integration: %d passed, %d failed, %d skipped; %.0fs"
          % (up, uf, fp, ff, ip, ifail, isk, time.monotonic() - t0))
    up += fp
    uf += ff
    line = "%d passed, %d failed" % (up + ip, uf + ifail)
    if isk:
        line += ", %d skipped" % isk
    print(line)
    return 0 if uf + ifail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: MIT
"""mailaudit-milter under valgrind (memcheck) through the milter tests.

Runs the send-auditing and report-journaling tests of test_milter.py with
the milter started under valgrind --leak-check=full, then asserts that
every valgrind log reports no memory error and no definitely or
indirectly lost block.  Malformed mail, a thousand recipients, refusals
and an unreachable journal store are all in those tests.
"""

import glob
import os
import re
import shutil
import stat
import tempfile
import unittest

import milter_fixture
import test_milter

VALGRIND = shutil.which("valgrind")


@unittest.skipIf(VALGRIND is None, "valgrind not installed")
class MilterUnderValgrind(unittest.TestCase):
    def test_no_errors_no_leaks(self):
        logdir = tempfile.mkdtemp(prefix="mailaudit-vg-")
        self.addCleanup(shutil.rmtree, logdir, ignore_errors=True)
        real = milter_fixture.MilterFixture.binary
        wrapper = os.path.join(logdir, "milter.sh")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec %s --leak-check=full "
                    "--show-leak-kinds=definite,indirect "
                    "--errors-for-leak-kinds=definite,indirect "
                    "--num-callers=20 --log-file=%s/vg.%%p.log %s \"$@\"\n"
                    % (VALGRIND, logdir, real(None)))
        os.chmod(wrapper, stat.S_IRWXU)
        milter_fixture.MilterFixture.binary = lambda self: wrapper
        self.addCleanup(setattr, milter_fixture.MilterFixture, "binary",
                        real)
        suite = unittest.TestSuite()
        for cls in (test_milter.MilterSend, test_milter.MilterReport):
            suite.addTests(
                unittest.defaultTestLoader.loadTestsFromTestCase(cls))
        result = unittest.TestResult()
        suite.run(result)
        self.assertEqual(result.errors + result.failures, [],
                         "the milter tests failed under valgrind")
        self.assertGreaterEqual(result.testsRun, 10)
        texts = {}
        for path in glob.glob(os.path.join(logdir, "vg.*.log")):
            with open(path) as f:
                texts[int(path.rsplit(".", 2)[-2])] = (path, f.read())
        # postmap children (posix_spawn) leave a log that ends at exec:
        # only the milters' own logs count.
        milters = {pid: v for pid, v in texts.items()
                   if int(re.search(r"Parent PID: (\d+)", v[1]).group(1))
                   not in texts}
        self.assertGreaterEqual(len(milters), 2)
        for path, text in milters.values():
            self.assertRegex(text, r"ERROR SUMMARY: 0 errors", path)
            for kind in ("definitely", "indirectly"):
                m = re.search(kind + r" lost: ([\d,]+) bytes", text)
                if m:  # absent when nothing was allocated at exit
                    self.assertEqual(m.group(1), "0", path + "\n" + text)


if __name__ == "__main__":
    unittest.main()

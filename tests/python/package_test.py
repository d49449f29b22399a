"""The dwdp package: it imports without loading libdwdp.so, says in one sentence when the
library is missing or is not a dwdp library, and installs with pip."""

import os
import subprocess
import sys
import tempfile
import unittest

import support

import dwdp

PACKAGE = os.path.join(support.REPO, "python")


def run_python(code, library, path=PACKAGE):
    env = dict(os.environ, PYTHONPATH=path, DWDP_LIBRARY=library)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir(), check=False)


class ImportTest(unittest.TestCase):
    def test_imports_without_the_library(self):
        run = run_python(
            "import dwdp\n"
            "print(dwdp.__version__, sorted(dwdp.__all__)[:3])\n"
            "try:\n"
            "    dwdp.recipes(2, 16)\n"
            "except dwdp.Error as e:\n"
            "    print(e.code, e)\n", "/nonexistent/libdwdp.so")
        self.assertEqual(run.returncode, 0, run.stderr)
        lines = run.stdout.splitlines()
        self.assertEqual(lines[0], "0.1.0 ['Config', 'Error', 'Runtime']")
        self.assertTrue(lines[1].startswith("library dwdp: cannot load libdwdp.so: build it "
                                            "(scripts/build.sh), or set DWDP_LIBRARY to its "
                                            "path; tried /nonexistent/libdwdp.so"), lines[1])

    def test_a_library_without_the_c_abi_is_refused(self):
        run = run_python(
            "import dwdp\n"
            "try:\n"
            "    dwdp.recipes(2, 16)\n"
            "except dwdp.Error as e:\n"
            "    print(e)\n", "libc.so.6")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("dwdp: libc.so.6 is not a libdwdp.so with the C ABI this package needs "
                      "(no dwdp_abi_version)", run.stdout)

    def test_the_library_found_is_the_one_named(self):
        self.assertEqual(os.path.realpath(dwdp.library_path()),
                         os.path.realpath(os.environ.get("DWDP_LIBRARY", dwdp.library_path())))

    def test_the_runtime_without_pytorch_says_so(self):
        try:
            import torch  # noqa: F401
            self.skipTest("PyTorch is installed here")
        except ImportError:
            pass
        config = dwdp.Config(dwdp_size=2, num_experts_per_worker=8, num_prefetch_experts=8,
                             num_experts=16, moe_layers=(0,), weights=[("w", "bf16", (64,))])
        with self.assertRaises(dwdp.Error) as caught:
            dwdp.Runtime.create(config, {})
        self.assertIn("dwdp.Runtime needs PyTorch", str(caught.exception))


class PipInstallTest(unittest.TestCase):
    def test_pip_installs_the_package_without_a_download(self):
        if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                          check=False).returncode != 0:
            self.skipTest("pip is not installed for %s" % sys.executable)
        with tempfile.TemporaryDirectory() as target:
            # --no-index: the build must need nothing from a package index.
            install = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                 "--disable-pip-version-check", "--target", target, PACKAGE],
                capture_output=True, text=True, check=False)
            self.assertEqual(install.returncode, 0, install.stderr)
            def sources(folder):
                return sorted(name for name in os.listdir(os.path.join(folder, "dwdp"))
                              if name.endswith(".py"))
            self.assertEqual(sources(target), sources(PACKAGE))
            run = run_python("import dwdp\nprint(dwdp.__file__)\n"
                             "print(dwdp.recipes(2, 4)['recipes'][0])",
                             os.environ.get("DWDP_LIBRARY", dwdp.library_path()), path=target)
            self.assertEqual(run.returncode, 0, run.stderr)
            lines = run.stdout.splitlines()
            self.assertTrue(lines[0].startswith(target), lines[0])
            self.assertEqual(lines[1], "{'num_experts_per_worker': 2, 'num_prefetch_experts': 2, "
                                       "'overlap': 0}")


if __name__ == "__main__":
    unittest.main()

"""Build script for the optional compiled twins (Cython modules in ``native/cython``).

A failed or impossible build never fails the installation: the server then runs on the
pure-Python twins and says so at start (``sandcat info``). ``SANDCAT_NO_EXTENSIONS=1``
at build time skips compilation; ``SANDCAT_DEBUG_BUILD=1`` builds without optimisation.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent
PYX = sorted((ROOT / "native" / "cython").glob("*.pyx"))


class OptionalBuildExt(build_ext):
    """Build each extension, but only warn when one cannot be built."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            print(
                f"WARNING: compiled extensions not built ({exc}); using pure Python",
                file=sys.stderr,
            )

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(
                f"WARNING: extension {ext.name} not built ({exc}); using pure Python",
                file=sys.stderr,
            )


def extensions() -> list[Extension]:
    if os.environ.get("SANDCAT_NO_EXTENSIONS", "") not in {"", "0"} or not PYX:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("WARNING: Cython is not installed; using pure Python", file=sys.stderr)
        return []
    debug = os.environ.get("SANDCAT_DEBUG_BUILD", "") not in {"", "0"}
    args = ["-O0", "-g"] if debug else ["-O3"]
    exts = [
        Extension(
            f"sandcat._native._{pyx.stem}", [str(pyx.relative_to(ROOT))], extra_compile_args=args
        )
        for pyx in PYX
    ]
    return list(
        cythonize(
            exts,
            language_level=3,
            quiet=True,
            compiler_directives={"boundscheck": debug, "wraparound": False},
        )
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})

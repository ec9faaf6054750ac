"""Ship the top-level declarative folders (protocols/, datasets/, adapters/, reports/)
inside the wheel as ``xeval/_assets/<kind>/``; an editable install reads them in place."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

KINDS = ("protocols", "datasets", "adapters", "reports")


class BuildPyWithAssets(build_py):
    def run(self):
        super().run()
        root = Path(__file__).resolve().parent
        for kind in KINDS:
            src = root / kind
            if src.is_dir():
                dst = Path(self.build_lib) / "xeval" / "_assets" / kind
                shutil.copytree(src, dst, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithAssets})

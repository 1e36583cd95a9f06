"""Packages and their folders; everything else about the build is in ``pyproject.toml``.

The design card's top-level folders are installed as subpackages of ``kaizend`` (issue 17):
``core/`` becomes ``kaizend.core``, and so on, so an installed kaizend puts one name,
``kaizend``, into site-packages.
"""

from setuptools import find_packages, setup

FOLDERS = ("core", "daemon", "handlers", "models", "storage")

packages = ["kaizend"] + [
    f"kaizend.{name}" for name in find_packages(include=[f"{f}*" for f in FOLDERS])
]
setup(
    packages=packages,
    package_dir={"kaizend": "kaizend", **{f"kaizend.{f}": f for f in FOLDERS}},
)

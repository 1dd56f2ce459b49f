"""Package discovery for the repository layout of DESIGN.md §2.

The folders `backbones/` and `tasks/` stay at the top level of the repository but are installed as
`videoanyup.backbones` and `videoanyup.tasks` (setuptools' package-dir mapping). Everything else lives in
pyproject.toml.
"""

from setuptools import find_packages, setup

MAPPED_FOLDERS = {"videoanyup.backbones": "backbones", "videoanyup.tasks": "tasks"}

packages = find_packages(include=["videoanyup", "videoanyup.*"])
for package, folder in MAPPED_FOLDERS.items():
    packages += [package] + [f"{package}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=MAPPED_FOLDERS)

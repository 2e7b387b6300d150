"""pyproject.toml lists its packages by hand (each repository folder maps onto a `hybridserve.*` name), and a
wheel -- `pip install .`, as the GPU recipe installs hybridserve (benchmarks/gpu_start.sh) -- carries only the listed
ones. An editable install finds unlisted subfolders anyway, so a forgotten one passes every other test and then
fails on first import from a wheel (kernels/short_conv did)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped, listed = setup["package-dir"], set(setup["packages"])
    expected = set()
    for name, folder in mapped.items():
        if "." in name and name.rsplit(".", 1)[0] in mapped and folder.startswith(mapped[name.rsplit(".", 1)[0]] + "/"):
            continue  # a subpackage mapped explicitly: reached from its parent below
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            expected.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert expected - listed == set(), f"package folders missing from pyproject's packages: {expected - listed}"
    assert listed - expected == set(), f"listed packages with no folder: {listed - expected}"

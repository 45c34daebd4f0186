"""The study service installs as `phaser_opt` (never as `hyperopt`), editable and as a wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_holds_phaser_opt_and_no_hyperopt_package(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("phaser-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "phaser_opt/cli.py" in names and "phaser_opt/space.py" in names and "phaser/run.py" in names
    assert not any(name.startswith("hyperopt/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "phaser-opt = phaser_opt.cli:main" in text


def test_installed_package_imports_from_anywhere_and_shadows_nothing(tmp_path):
    code = (
        "import importlib.util, phaser_opt.cli; "
        "print(phaser_opt.cli.__file__); print(importlib.util.find_spec('hyperopt'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True)
    module_file, hyperopt_spec = out.stdout.split("\n")[:2]
    assert module_file.endswith("phaser_opt/cli.py")
    # only the PyPI package of that name may answer to `import hyperopt`
    assert hyperopt_spec == "None" or "site-packages" in hyperopt_spec

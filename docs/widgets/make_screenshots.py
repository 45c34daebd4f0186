"""Screenshots of the example notebook's widgets, rendered offline in headless Chromium.

    python docs/widgets/make_screenshots.py [--chromium /usr/bin/chromium] [--skip-execute]

1. executes ``examples/widgets.ipynb`` and exports it to HTML with the widget state stored
   (``jupyter nbconvert --to html --execute``);
2. fetches the widget renderer from the npm registry (``npm pack @jupyter-widgets/html-manager``
   and ``requirejs``; cached in ``~/.cache/phaser-widget-screenshots``) and takes anywidget's AMD
   bundle from its Python package, because the exported page loads them from CDNs;
3. rewrites the page's script URLs to those local files, drops MathJax, and for each widget writes
   a page showing only that widget's cells;
4. runs headless Chromium on each page and writes ``docs/widgets/<name>.png``.

Not a test: it needs npm (the registry), Chromium and a couple of minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NOTEBOOK = REPO / "examples" / "widgets.ipynb"
CACHE = Path.home() / ".cache" / "phaser-widget-screenshots"
NPM_PACKAGES = {"html-manager": "@jupyter-widgets/html-manager@1", "requirejs": "requirejs@2"}

# screenshot name -> the beginnings of the notebook cells it shows, and the window height [px]
SHOTS = {
    "raw_data_explorer": (["from phaser.widgets import raw_data_explorer"], 1300),
    "reconstruction_viewer": (["from phaser.widgets import reconstruction_viewer"], 1000),
    "job_widget": (["from phaser.widgets import job_widget"], 1100),
    "study_viewer": (["from phaser.widgets import study_viewer"], 1700),
    "bad_input": (
        [
            "reconstruction_viewer(work",
            'study_viewer("no_such_study"',
            'job_widget("http://127.0.0.1:9"',
        ],
        600,
    ),
}


def npm_package(spec: str, name: str) -> Path:
    """The unpacked npm package ``spec`` (``npm pack``), cached; returns its ``package`` folder."""
    target = CACHE / name
    if (target / "package").is_dir():
        return target / "package"
    target.mkdir(parents=True, exist_ok=True)
    packed = subprocess.run(
        ["npm", "pack", spec, "--pack-destination", str(target)], check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    with tarfile.open(target / packed) as archive:
        archive.extractall(target, filter="data")
    return target / "package"


def renderer_files(folder: Path) -> dict[str, Path]:
    """Copies of require.js, the html-manager's embed-amd.js (with its fonts) and anywidget's AMD
    bundle in ``folder``."""
    import anywidget

    manager = npm_package(NPM_PACKAGES["html-manager"], "html-manager")
    requirejs = npm_package(NPM_PACKAGES["requirejs"], "requirejs")
    shutil.copytree(manager / "dist", folder / "html-manager", dirs_exist_ok=True)
    shutil.copy(requirejs / "require.js", folder / "require.js")
    shutil.copy(Path(anywidget.__file__).parent / "nbextension" / "index.js", folder / "anywidget.js")
    return {
        "require": folder / "require.js",
        "embed": folder / "html-manager" / "embed-amd.js",
        "anywidget": folder / "anywidget.js",
    }


def export_notebook(folder: Path) -> Path:
    """The example notebook executed and exported to HTML with its widget state."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "html",
            "--execute",
            "--ExecutePreprocessor.store_widget_state=True",
            "--ExecutePreprocessor.timeout=300",
            "--output-dir",
            str(folder),
            str(NOTEBOOK),
        ],
        check=True,
        cwd=NOTEBOOK.parent,
    )
    return folder / "widgets.html"


def offline(page: str, files: dict[str, Path]) -> str:
    """The exported page with its CDN scripts replaced by the local files (MathJax dropped)."""
    page = re.sub(r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"[^>]*></script>', "", page)
    page = re.sub(
        r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/require\.js/[^"]*"></script>',
        f'<script src="{files["require"].as_uri()}"></script>'
        f"<script>require.config({{paths: {{anywidget: {json.dumps(files['anywidget'].with_suffix('').as_uri())}}}}});"
        "</script>",
        page,
    )
    page = page.replace("https://unpkg.com/@jupyter-widgets/html-manager@*/dist/embed-amd.js", files["embed"].as_uri())
    if "unpkg.com/@jupyter-widgets/html-manager" in page or "cdnjs.cloudflare.com/ajax/libs/require" in page:
        raise RuntimeError("the exported page's script URLs changed: update offline() in make_screenshots.py")
    return page


def cell_ids(starts: list[str]) -> list[str]:
    """The ids of the notebook's code cells whose source begins with one of ``starts``."""
    notebook = json.loads(NOTEBOOK.read_text())
    found = [
        cell["id"]
        for cell in notebook["cells"]
        if cell["cell_type"] == "code" and any("".join(cell["source"]).startswith(s) for s in starts)
    ]
    if len(found) != len(starts):
        raise RuntimeError(f"expected {len(starts)} cells starting with {starts}, found {len(found)}")
    return found


def only_cells(page: str, ids: list[str]) -> str:
    """``page`` showing only the cells ``ids`` (the rest hidden by a style sheet)."""
    shown = ", ".join(f'[id="cell-id={cell}"]' for cell in ids)
    style = f"<style>.jp-Cell {{display: none !important}} {shown} {{display: block !important}}</style>"
    return page.replace("</head>", style + "</head>", 1)


def screenshot(chromium: str, page: Path, png: Path, height: int) -> None:
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--allow-file-access-from-files",
            "--hide-scrollbars",
            f"--window-size=1200,{height}",
            "--virtual-time-budget=20000",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--work", type=Path, default=None, help="keep the pages here (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="phaser-screenshots-"))
    work.mkdir(parents=True, exist_ok=True)
    files = renderer_files(work / "renderer")
    page = offline(export_notebook(work).read_text(), files)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (starts, height) in SHOTS.items():
        html_path = work / f"{name}.html"
        html_path.write_text(only_cells(page, cell_ids(starts)))
        screenshot(args.chromium, html_path, args.out / f"{name}.png", height)
        print(f"wrote {args.out / f'{name}.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

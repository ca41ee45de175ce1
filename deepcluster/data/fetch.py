"""Files a dataset needs that are not there: one try with torchvision's downloader, then one
short error that says where we looked and the ways out."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from deepcluster.errors import DataError


def torchvision_download(dataset: str, root: Path) -> str:
    """Fetch train and test of torchvision.datasets.<dataset> into root; '' or why it failed."""
    import torchvision

    cls = getattr(torchvision.datasets, dataset)
    try:  # torchvision prints every mirror's failure: keep the user's terminal for ours
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
    except Exception as exc:  # no network, proxy, mirror down: all end the same way
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the download failed ({reason[:120]})"
    return ""


def missing_data_error(
    what: str, where: list[Path], layout: str, why: str, debian_package: str | None = None
) -> DataError:
    ways = [
        f"set data.root=<a folder holding {layout}> (or the environment variable DEEPCLUSTER_DATA)"
    ]
    if debian_package:
        ways.append(f"on Debian: apt-get install {debian_package}")
    ways.append("run on the bundled scikit-learn digits: dataset=digits")
    places = " or ".join(str(p) for p in where)
    return DataError(f"{what} found under {places}, and {why}. Ways out: {'; '.join(ways)}.")

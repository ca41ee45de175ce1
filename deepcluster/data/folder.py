"""Your own images: every PNG, JPEG, BMP or TIFF under a folder, decoded once by PIL.

`DIR/<class>/…/image.png`: the immediate subfolders name the classes (used only to score);
images directly in DIR (or a single class folder): unlabelled. Linked folders are followed;
hidden files and folders (`.name`: `.ipynb_checkpoints`, `.thumbnails`) are not read. Each
image is turned upright as its EXIF orientation says (phone photos), laid on a `background`
where it is transparent, converted to grey or RGB and resized to image_size × image_size as it
is read, into the one uint8 tensor every dataset is; 16-bit grey (microscopy, scans) is scaled
from 0-65535 (or 0-`white`: 4095 for a 12-bit camera) and float images from 0-1, not clipped.
An unreadable, truncated or oversized file is skipped with a warning naming it; `skipped`
lists them. `limit` reads a fixed sample of that many files, drawn across the whole folder
(and so across its classes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from deepcluster.data.base import ImageDataModule
from deepcluster.errors import DataError

log = logging.getLogger(__name__)

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def image_files(root: Path) -> list[Path]:
    """The image files under root, sorted: through linked folders (each real folder once, so
    a link back up does not loop), not into hidden ones, hidden files left out."""
    found, seen = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        # in name order: which of two links to one folder names its images does not depend
        # on the file system's listing order
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found += [
            Path(folder, name)
            for name in names
            if not name.startswith(".") and Path(name).suffix.lower() in EXTENSIONS
        ]
    return sorted(p for p in found if p.is_file())


def text_path(path: Path | str) -> str:
    """The path as text any UTF-8 file or terminal takes: a name that is not UTF-8 (an archive
    from another system; Python keeps its bytes as surrogates) gets them escaped, \\xe9."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def unreadable_errors() -> tuple[type[Exception], ...]:
    """What PIL raises for a file it cannot decode: broken, truncated, not an image, or over
    its decompression-bomb limit (an Exception, not an OSError)."""
    from PIL import Image

    return (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


# grey modes deeper than 8 bits, and the values that map to white: PIL's convert("L")
# clips them at 255 (a 16-bit scan turns almost white, a float image in [0, 1] black)
HIGH_DEPTH = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1}


def to_8bit(img, white: int | None = None):
    """A 16-bit (or 32-bit integer) grey image scaled from 0-65535 (0-white where given), a
    float one from 0-1, to 8-bit grey; values outside that range raise ValueError (the file is
    skipped, named)."""
    from PIL import Image

    top = white if white is not None and img.mode != "F" else HIGH_DEPTH[img.mode]
    arr = np.asarray(img, dtype=np.float64)
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > top:
        raise ValueError(
            f"{img.mode} image with values {arr.min():g} … {arr.max():g}: expected 0 … {top}"
            + (" (dataset.white)" if top == white else "")
        )
    return Image.fromarray(np.round(arr * (255 / top)).astype(np.uint8), mode="L")


BACKGROUNDS = {"white": 255, "black": 0}


def check_background(background: str) -> None:
    """dataset.background of the folder and array readers."""
    if background not in BACKGROUNDS:
        raise ValueError(
            f"dataset.background={background!r}: give one of {', '.join(BACKGROUNDS)} (what "
            "a transparent image's see-through pixels become)"
        )


def flatten(img, background: str):
    """A transparent image laid on the background (its transparent pixels would otherwise keep
    whatever colour they hide: often black, so a black drawing on a transparent page reads as
    one black square); an opaque one unchanged. Transparency is an alpha channel, or a
    palette entry or colour key (a PNG's tRNS: grey or RGB line art exported so)."""
    from PIL import Image

    if "transparency" in img.info:  # a palette entry or a colour key (tRNS): alpha from it
        img = img.convert("RGBA")
    if img.mode not in ("RGBA", "LA", "PA", "La", "RGBa"):
        return img
    img = img.convert("RGBA")
    page = Image.new("RGBA", img.size, (BACKGROUNDS[background],) * 3 + (255,))
    return Image.alpha_composite(page, img).convert("RGB")


def read_image(
    path: Path, size: int | None, channels: int, white: int | None = None, background: str = "white"
) -> np.ndarray:
    """(channels, size, size) uint8 (size None: the file's own height and width); raises one
    of unreadable_errors() for a broken file."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()  # decode now: a truncated file fails here, not later
        img = ImageOps.exif_transpose(img)  # upright, as a viewer shows it
        if img.mode in HIGH_DEPTH:
            img = to_8bit(img, white)
        img = flatten(img, background).convert("L" if channels == 1 else "RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def read_images(
    files: list[Path],
    size: int | None,
    channels: int,
    warn: Callable[[str], None],
    white: int | None = None,
    wanted: int | None = None,
    background: str = "white",
) -> tuple[list[np.ndarray], list[Path], list[Path]]:
    """Each readable file's image, those files, and the unreadable ones: each skipped and
    named through warn (training logs it, deepcluster-predict prints it). With `wanted`, reading
    stops once that many images are read."""
    images, kept, skipped = [], [], []
    for f in files:
        if wanted is not None and len(kept) == wanted:
            break
        try:
            images.append(read_image(f, size, channels, white, background))
            kept.append(f)
        except unreadable_errors() as exc:
            warn(f"skipped {text_path(f)}: {exc}")
            skipped.append(f)
    return images, kept, skipped


def any_high_depth(files: list[Path], look_at: int = 20) -> bool:
    """Are some of the (first) files deeper than 8 bits? Their headers only."""
    from PIL import Image

    for f in files[:look_at]:
        with Image.open(f) as img:
            if img.mode in HIGH_DEPTH:
                return True
    return False


class FolderDataModule(ImageDataModule):
    def __init__(
        self,
        path: str | None = None,
        white: int | None = None,
        background: str = "white",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not path:
            raise ValueError("dataset.path is not set: give dataset.path=<folder of images>")
        check_background(background)
        if white is not None and (not isinstance(white, int) or not 1 <= white <= 65535):
            raise ValueError(
                f"dataset.white={white!r} must be an integer in 1 … 65535: the value a 16-bit "
                "image reads as white (4095 for 12-bit data), or null for 65535"
            )
        self.root = Path(path).expanduser()
        self.white = white
        self.background = background
        self.class_names: list[str] | None = None

    def load(self) -> tuple[torch.Tensor, np.ndarray | None]:
        root = self.root
        if root.is_file():
            raise DataError(f"dataset.path={root} is a file: give the folder that holds the images")
        if not root.is_dir():
            raise DataError(f"dataset.path={root}: no such folder")
        files = image_files(root)
        if not files:
            raise DataError(f"dataset.path={root}: no image files (PNG, JPEG, BMP, TIFF) in it")
        # labelled: every image sits in a class folder, and two classes or more have images
        # read (one folder holding everything is how an unzipped archive looks, not a labelling)
        # class names as text (a folder name that is not UTF-8 would fail in the CSV and plots)
        class_of = {f: text_path(f.relative_to(root).parts[0]) for f in files if f.parent != root}
        labelled = len(class_of) == len(files)
        loose = [f for f in files if f.parent == root]
        if loose and len(set(class_of.values())) >= 2:
            # class folders and a few images beside them: most likely a stray file, and it
            # turns the whole folder unlabelled (no ACC, no confusion figure); say so
            log.warning(
                "%s has class folders, but %d image(s) sit beside them (%s): the folder is "
                "read as unlabelled (no ACC/NMI). Move them into a class folder to score "
                "against the folders",
                root,
                len(loose),
                ", ".join(text_path(f.name) for f in loose[:5]) + (" …" if len(loose) > 5 else ""),
            )
        if self.limit is not None and self.limit < len(files):
            # a sample across the folder, not its first (sorted: one class's) files; the same
            # for every seed, so that seeds compare on one dataset
            order = np.random.default_rng(0).permutation(len(files))
            files = [files[i] for i in order]
        images, kept, skipped = read_images(
            files,
            self.image_size,
            self.channels,
            log.warning,
            self.white,
            self.limit,
            self.background,
        )
        if self.limit is not None:  # back in the folder's order
            ranked = sorted(range(len(kept)), key=lambda i: kept[i])
            images, kept = [images[i] for i in ranked], [kept[i] for i in ranked]
        self.skipped += [text_path(f) for f in sorted(skipped)]
        tried = len(kept) + len(skipped)
        if not kept:
            raise DataError(
                f"dataset.path={root}: none of its {tried} image files could "
                "be read (see the warnings above)"
            )
        if skipped:
            log.warning("%d of %d files could not be read and were skipped", len(skipped), tried)
        self.paths = [text_path(f.relative_to(root)) for f in kept]
        labelled = labelled and len({class_of[f] for f in kept}) >= 2
        labels = None
        if labelled:
            classes = [class_of[f] for f in kept]
            self.class_names = sorted(set(classes))
            index = {name: i for i, name in enumerate(self.class_names)}
            labels = np.array([index[c] for c in classes], dtype=np.int64)
        log.info(
            "%s: %d images, %s",
            root,
            len(kept),
            f"{len(self.class_names)} classes" if labelled else "unlabelled",
        )
        images = torch.from_numpy(np.stack(images))
        if self.white is None and int(images.max()) <= 16 and any_high_depth(kept):
            log.warning(
                "every image is darker than 16/255: if they are 12-bit (or 10-bit) data in "
                "16-bit files, they were read against 65535 and lost their grey levels; set "
                "dataset.white=4095 (or 1023)"
            )
        return images, labels

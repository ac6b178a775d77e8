"""Any timm or torchvision classifier as a registry entry: ``timm:NAME``, ``torchvision:NAME``.

The entry's input size, normalisation and resize rule come from the architecture's own
pretrained configuration (timm's ``pretrained_cfg``, torchvision's default weights and their
transforms), so the model is fed as its authors fed it. Weights: ``weights=FILE`` (a state
dict, or a ``.safetensors`` file), else the library's own download when online.
"""
from __future__ import annotations

import difflib
import re
from functools import lru_cache

import torchvision
from torch import nn

from .registry import IMAGENET_MEAN, IMAGENET_STD, ModelCfg, register_prefix


def _unknown(prefix: str, arch: str, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(arch, known, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(prefix + ':' + c for c in close)}?" if close else ""
    return ValueError(f"name={prefix + ':' + arch!r}: {prefix} has no architecture {arch!r}."
                      f"{hint}")


@lru_cache(maxsize=None)
def timm_cfg(arch: str) -> ModelCfg:
    """Registry entry of timm's ``arch`` (``"convnext_tiny"``, ``"resnet18.a1_in1k"``)."""
    import timm  # imported on first use: it takes a second
    if not arch or not timm.is_model(arch):
        raise _unknown("timm", arch, timm.list_models())
    pc = timm.models.get_pretrained_cfg(arch)
    pc = pc.to_dict() if pc is not None else {}
    k = int(pc.get("num_classes") or 1000)

    def build(num_classes: int = k) -> nn.Module:
        import timm
        return timm.create_model(arch, pretrained=False, num_classes=num_classes)
    url = pc.get("url") or (f"https://huggingface.co/{pc['hf_hub_id']}" if pc.get("hf_hub_id")
                            else None)
    return ModelCfg(name=f"timm:{arch}", builder=build,
                    dataset="imagenet" if k == 1000 else f"{k} classes", num_classes=k,
                    input_size=tuple(pc.get("input_size") or (3, 224, 224)),
                    mean=tuple(pc.get("mean") or IMAGENET_MEAN),
                    std=tuple(pc.get("std") or IMAGENET_STD),
                    interpolation=pc.get("interpolation") or "bicubic",
                    crop_pct=float(pc.get("crop_pct") or 0.875), weights="timm", url=url,
                    licence=pc.get("license") or "", extra={"arch": arch})


@lru_cache(maxsize=None)
def torchvision_cfg(arch: str) -> ModelCfg:
    """Registry entry of torchvision's ``arch`` with its default ImageNet weights."""
    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known:
        raise _unknown("torchvision", arch, known)
    w = torchvision.models.get_model_weights(arch).DEFAULT
    kw = dict(getattr(w.transforms, "keywords", {}))
    crop = kw.get("crop_size", 224)
    resize = kw.get("resize_size", 256)
    resize = resize[0] if isinstance(resize, (list, tuple)) else resize
    interpolation = kw.get("interpolation")
    k = len(w.meta["categories"])
    extra_kw, ignore = {}, ()
    if arch in ("googlenet", "inception_v3"):  # their weights need transform_input=True
        extra_kw = dict(aux_logits=False, transform_input=True, init_weights=False)
        ignore = ("aux1.", "aux2.", "AuxLogits.")

    def build(num_classes: int = k) -> nn.Module:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes,
                                            **extra_kw)
    file = w.url.rsplit("/", 1)[-1]
    digest = re.search(r"-([a-f0-9]{6,})\.", file)
    top1 = w.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    return ModelCfg(name=f"torchvision:{arch}", builder=build, dataset="imagenet",
                    num_classes=k, input_size=(3, crop, crop),
                    mean=tuple(kw.get("mean", IMAGENET_MEAN)),
                    std=tuple(kw.get("std", IMAGENET_STD)),
                    interpolation=getattr(interpolation, "value", None) or "bilinear",
                    crop_pct=crop / resize, weights="torchvision", file=file, url=w.url,
                    sha256=digest.group(1) if digest else None, ignore=ignore,
                    published_top1=None if top1 is None else top1 / 100,
                    published_source=f"torchvision {w}.meta['_metrics']", licence="BSD-3-Clause",
                    extra={"arch": arch, "tv": str(w)})


register_prefix("timm", timm_cfg)
register_prefix("torchvision", torchvision_cfg)

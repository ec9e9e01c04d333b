"""mixacm-hf: MixACM robustness transfer (Awais et al., NeurIPS 2021) in the Hugging Face ecosystem."""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .models import WideResNetConfig, WideResNetForImageClassification, WideResNetModel

__version__ = "0.1.0"

AutoConfig.register(WideResNetConfig.model_type, WideResNetConfig, exist_ok=True)
AutoModel.register(WideResNetConfig, WideResNetModel, exist_ok=True)
AutoModelForImageClassification.register(WideResNetConfig, WideResNetForImageClassification, exist_ok=True)
WideResNetConfig.register_for_auto_class()
WideResNetModel.register_for_auto_class("AutoModel")
WideResNetForImageClassification.register_for_auto_class("AutoModelForImageClassification")


def __getattr__(name: str):
    # The trainer pulls in accelerate/datasets machinery: import it only when asked for.
    if name in ("MixACMTrainer", "MixACMTrainingArguments"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "WideResNetConfig",
    "WideResNetModel",
    "WideResNetForImageClassification",
    "MixACMTrainer",
    "MixACMTrainingArguments",
]

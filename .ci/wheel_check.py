"""Run from outside the repository with a venv where only the built wheel is installed (not editable): the package
must come from site-packages, write a model card from its packaged template, and load the saved folder back."""

import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForImageClassification

import mixacm_hf
from mixacm_hf.hub import TEMPLATE, save_robust_model
from mixacm_hf.models import WideResNetConfig, WideResNetForImageClassification

assert "site-packages" in mixacm_hf.__file__, f"mixacm_hf imported from {mixacm_hf.__file__}, not the wheel"
assert TEMPLATE.is_file(), f"the card template {TEMPLATE} is missing from the wheel"
torch.manual_seed(0)
model = WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10)).eval()
with tempfile.TemporaryDirectory() as folder:
    card = save_robust_model(model, folder, [], {"method": "natural", "train_seconds": 1.0, "params": 1})
    text = (Path(folder) / "README.md").read_text()
    assert "WRN-10-1" in text and "library_name: transformers" in text, text[:400]
    loaded = AutoModelForImageClassification.from_pretrained(folder).eval()
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(pixel_values=pixels).logits, model(pixel_values=pixels).logits, atol=1e-6)
print(f"wheel check passed: {mixacm_hf.__file__}, card of {len(text)} characters, folder reloads", file=sys.stderr)

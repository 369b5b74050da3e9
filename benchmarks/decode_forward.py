"""One forward pass of the default model: transformers' own against the backend's lean one
(``LlamaDecoder``: the same modules, q|k|v and gate|up fused), in one run.

    python benchmarks/decode_forward.py [--reps N] [--quantize none|fp16|int8]

For a context of 100 and of 400 tokens, a pass of one new token for one sequence and for a
batch of four (K = 4 sampling), and a 6-token pass (a draft checked); the two forwards take
turns, each on its own KV cache of the same tokens. Also checks that their logits agree.
Prints a table of median milliseconds per pass, then one JSON line (transformers_ms, lean_ms
and ratio = lean_ms / transformers_ms for one token at 400; max_abs_diff over every pass)."""

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from hybrid_agent.config import Settings
from hybrid_agent.models.llm.kv_cache import growing_cache
from hybrid_agent.models.llm.llama_decoder import LlamaDecoder
from hybrid_agent.models.llm.quantize import QUANTIZATIONS, quantize
from hybrid_agent.models.llm.transformers_backend import convert_gguf, default_gguf

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--reps", type=int, default=40, help="passes of each kind per forward")
parser.add_argument("--quantize", choices=QUANTIZATIONS, help="weights (default: HA_LLM_QUANTIZE)")
args = parser.parse_args()
settings = Settings()
kind = args.quantize or settings.llm_quantize

model = AutoModelForCausalLM.from_pretrained(convert_gguf(default_gguf(), settings.model_cache_dir)).eval()
decoder = LlamaDecoder(model)   # from the float weights, then both quantized alike
quantize(model, kind)
quantize(decoder, kind)


def transformers_forward(ids: torch.Tensor, cache, keep: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=keep).logits.float()


forwards = {"transformers": transformers_forward, "lean": decoder}
torch.manual_seed(0)
rows, worst = [], 0.0
with torch.inference_mode():
    for context in (100, 400):
        prompt = torch.randint(0, model.config.vocab_size, (1, context))
        for batch, new in ((1, 1), (4, 1), (1, 6)):
            caches = {name: growing_cache(model.config) for name in forwards}
            for name, forward in forwards.items():
                forward(prompt, caches[name], 1)
                caches[name].batch_repeat_interleave(batch)
            times: dict[str, list[float]] = {name: [] for name in forwards}
            for _ in range(args.reps):
                ids = torch.randint(0, model.config.vocab_size, (batch, new))
                logits = {}
                for name, forward in forwards.items():
                    started = time.perf_counter()
                    logits[name] = forward(ids, caches[name], new)
                    times[name].append((time.perf_counter() - started) * 1000)
                    caches[name].crop(-new)   # the same context for every pass
                worst = max(worst, (logits["lean"] - logits["transformers"]).abs().max().item())
            medians = {name: statistics.median(values) for name, values in times.items()}
            rows.append((context, batch, new, medians["transformers"], medians["lean"]))

print(f"{'context':>8} {'batch':>6} {'tokens':>7} {'transformers ms':>16} {'lean ms':>8} {'ratio':>6}")
for context, batch, new, theirs, ours in rows:
    print(f"{context:>8} {batch:>6} {new:>7} {theirs:>16.1f} {ours:>8.1f} {ours / theirs:>6.2f}")
_, _, _, theirs, ours = rows[3]   # context 400, one sequence, one token
print(json.dumps({"transformers_ms": round(theirs, 2), "lean_ms": round(ours, 2), "ratio": round(ours / theirs, 3),
                  "max_abs_diff": worst, "quantize": kind, "reps": args.reps}))

"""LoRA fine-tuning of the proposer LLM (sft.py) and loading its adapter (adapter.py, the
transformers backend): on a tiny random llama with SmolLM2's tokenizer, and once on the
real default model (marked llm)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from hybrid_agent.agents.prompt import PromptParts, build_messages, render_call
from hybrid_agent.models.llm import LLMError
from hybrid_agent.models.llm.adapter import AdapterError, load_adapter
from hybrid_agent.models.llm.sft import (
    CARD_FILE,
    IGNORE,
    REPORT_FILE,
    SFTConfig,
    SFTExample,
    SFTReport,
    collate,
    completion_logits,
    encode,
    evaluate,
    fit,
    lora_model,
    read_examples,
    run_sft,
    split,
    stop_token_id,
    train_sft,
)
from hybrid_agent.models.llm.transformers_backend import TransformersLLM, convert_gguf, default_gguf
from hybrid_agent.policies.tool_schema import call_schema, validate_call

CACHE = Path(__file__).parents[2] / ".cache" / "models"  # shared with test_llm.py: one conversion
NAMES = ["alpha", "bravo", "cargo", "delta", "ember", "fjord", "gamma", "harbor"]


def example(i: int) -> SFTExample:
    """A step of an everyday goal, with the call that did it, as the agent records them."""
    name = NAMES[i % len(NAMES)]
    goal, call = [
        (f"Create a directory named {name}", {"tool": "shell", "args": {"cmd": f"mkdir -p {name}"}}),
        (f"Show the file {name}.txt", {"tool": "read_file", "args": {"path": f"{name}.txt"}}),
    ][i // len(NAMES) % 2]
    messages = build_messages(PromptParts(goal, f"{name}.txt (12 bytes)", []))
    return SFTExample(messages=messages, completion=render_call(call))


EXAMPLES = [example(i) for i in range(16)]


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return convert_gguf(default_gguf(), CACHE)


@pytest.fixture(scope="session")
def tokenizer(smollm2_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="session")
def tiny_dir(tokenizer: PreTrainedTokenizerBase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer llama (hidden 32) with random weights and SmolLM2's tokenizer."""
    out = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
        # Embeddings of std 0.02 in 32 dimensions keep every logit near 0 whatever the
        # attention does: nothing an attention-only LoRA learns could show in the loss.
        initializer_range=0.3,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tiny(tiny_dir: Path) -> LlamaForCausalLM:
    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()


# A random model learns only at a learning rate far above a real model's.
FAST = SFTConfig(lr=3e-2, epochs=4, batch_size=4, dropout=0.0)


@pytest.fixture(scope="session")
def trained(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SFTReport]:
    out = tmp_path_factory.mktemp("adapter")
    report = train_sft(EXAMPLES, tiny_dir, FAST, out, progress=False, command="hybrid-agent train sft --data x.jsonl")
    return out, report


# --- data ---------------------------------------------------------------------------------


def test_labels_mask_the_prompt_and_keep_the_completion_and_stop_token(tokenizer: PreTrainedTokenizerBase) -> None:
    ex = EXAMPLES[0]
    prompt = tokenizer.apply_chat_template(ex.messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    encoded = encode(tokenizer, ex, stop)
    assert encoded.input_ids[: len(prompt)] == list(prompt)
    assert encoded.labels[: len(prompt)] == [IGNORE] * len(prompt)
    completion = encoded.labels[len(prompt) :]
    assert IGNORE not in completion and completion == encoded.input_ids[len(prompt) :]
    assert completion[-1] == stop
    assert tokenizer.decode(completion[:-1]) == ex.completion


def test_the_stop_token_is_the_one_the_backend_stops_on(tiny_dir: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    assert stop_token_id(tiny(tiny_dir), tokenizer) == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_padding_changes_no_logit(tiny_dir: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    model = tiny(tiny_dir)
    encoded = [encode(tokenizer, ex, 2) for ex in EXAMPLES[:4]]
    assert len({len(e.input_ids) for e in encoded}) > 1  # so that some rows are padded
    with torch.no_grad():
        batched, targets = completion_logits(model, collate(encoded, pad_id=2))
        alone = [completion_logits(model, collate([e], pad_id=2)) for e in encoded]
        # The head on chosen positions gives what a whole forward pass gives there.
        full = model(input_ids=torch.tensor([encoded[0].input_ids])).logits[0, :-1]
    assert torch.allclose(batched, torch.cat([logits for logits, _ in alone]), atol=1e-5)
    assert torch.equal(targets, torch.cat([t for _, t in alone]))
    chosen = torch.tensor(encoded[0].labels[1:]) != IGNORE
    assert torch.allclose(alone[0][0], full[chosen], atol=1e-5)


def test_the_split_holds_out_a_tenth_and_at_least_one() -> None:
    train, val = split(16, 0.1, seed=0)
    assert len(val) == 2 and sorted(train + val) == list(range(16))
    assert split(3, 0.1, seed=0)[1] and split(16, 0.1, seed=0) == (train, val)
    with pytest.raises(ValueError, match="at least 2"):
        split(1, 0.1, seed=0)


def test_examples_are_read_from_jsonl_with_the_line_of_a_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"messages": e.messages, "completion": e.completion}) + "\n"
                            for e in EXAMPLES[:5]) + "\n")
    assert read_examples(good) == EXAMPLES[:5]
    assert read_examples(good, limit=2) == EXAMPLES[:2]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text().splitlines()[0] + "\n" + json.dumps({"messages": [], "completion": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: 'messages'"):
        read_examples(bad)


# --- training -----------------------------------------------------------------------------


def test_training_lowers_the_loss_and_changes_only_the_lora_weights(
    tiny_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    model = lora_model(tiny(tiny_dir), FAST)
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(any(f".{m}." in n for m in FAST.target_modules) for n in trainable)
    before = {n: p.detach().clone() for n, p in params.items()}
    encoded = [encode(tokenizer, ex, 2) for ex in EXAMPLES]
    start = evaluate(model, encoded, pad_id=2, batch_size=8)

    losses = fit(model, encoded, FAST, pad_id=2, progress=False)

    assert len(losses) == FAST.epochs * 4
    assert evaluate(model, encoded, pad_id=2, batch_size=8).loss < 0.7 * start.loss
    for name, value in model.named_parameters():
        changed = not torch.equal(value, before[name])
        # LoRA's A starts random and B at zero: both move; nothing else may.
        assert changed == (name in trainable), name


def test_training_is_deterministic_from_the_seed(tiny_dir: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    config = SFTConfig(lr=1e-2, epochs=1, batch_size=4)  # with dropout: it is seeded too
    encoded = [encode(tokenizer, ex, 2) for ex in EXAMPLES[:8]]
    runs = [fit(lora_model(tiny(tiny_dir), config), encoded, config, pad_id=2, progress=False) for _ in range(2)]
    assert runs[0] == runs[1]


def test_a_run_writes_the_adapter_the_card_and_the_report(trained: tuple[Path, SFTReport]) -> None:
    out, report = trained
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert (report.train_examples, report.val_examples, report.steps) == (14, 2, FAST.epochs * 4)
    assert report.val_after.loss < report.val_before.loss
    assert report.val_after.token_accuracy > report.val_before.token_accuracy
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    saved = json.loads((out / REPORT_FILE).read_text())
    assert saved["val_after"]["loss"] == report.val_after.loss and saved["config"]["rank"] == 8
    card = (out / CARD_FILE).read_text()
    assert "hybrid-agent train sft --data x.jsonl" in card and "q_proj, k_proj, v_proj, o_proj" in card


def test_run_sft_reads_the_data_file_and_records_it(tiny_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "steps.jsonl"
    data.write_text("".join(json.dumps({"messages": e.messages, "completion": e.completion}) + "\n" for e in EXAMPLES))
    report = run_sft(data, tmp_path / "out", base_model=tiny_dir, epochs=1, rank=4, limit=4, progress=False)
    assert (report.examples, report.config["rank"], report.config["alpha"]) == (4, 4, 8)
    assert str(data) in (tmp_path / "out" / CARD_FILE).read_text()


def test_too_few_examples_that_fit_is_an_error_saying_so(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 given, 3 of them longer than 100 tokens"):
        train_sft(EXAMPLES[:3], tiny_dir, SFTConfig(max_length=100), tmp_path, progress=False)


# --- loading ------------------------------------------------------------------------------


def test_the_merged_model_has_the_peft_models_logits(trained: tuple[Path, SFTReport], tiny_dir: Path) -> None:
    from peft import PeftModel

    out, _ = trained
    ids = torch.tensor([encode(AutoTokenizer.from_pretrained(tiny_dir), EXAMPLES[3], 2).input_ids])
    wrapped = PeftModel.from_pretrained(tiny(tiny_dir), out).eval()
    merged = load_adapter(tiny(tiny_dir), out)
    assert type(merged) is LlamaForCausalLM  # a plain model: nothing of peft left in the forward pass
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        expected, got, base = (m(input_ids=ids).logits for m in (wrapped, merged, tiny(tiny_dir)))
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, base, atol=1e-2)  # the adapter did something


def test_the_backend_loads_the_adapter_and_says_so(trained: tuple[Path, SFTReport], tiny_dir: Path) -> None:
    out, _ = trained
    llm = TransformersLLM(tiny_dir, adapter=out, max_new_tokens=48)
    assert llm.name == f"transformers:{tiny_dir}+lora:{out}"
    assert type(llm.model) is LlamaForCausalLM
    base = tiny(tiny_dir)
    o_proj = [m.model.layers[0].self_attn.o_proj.weight for m in (llm.model, base)]   # a LoRA target
    assert not torch.equal(*o_proj)
    # Greedy decoding (prompt cache, drafts) and sampling run on the merged model; a model
    # this small may ramble past the budget, but never writes a malformed call.
    tools = frozenset({"read_file", "list_dir", "finish"})
    for k in (1, 3):
        for candidate in llm.propose(EXAMPLES[5].messages, call_schema(tools), k=k).candidates:
            if candidate.error is None:
                validate_call(candidate.parsed, tools=tools)
            else:
                assert candidate.error.startswith("cut short"), candidate.error


def _broken(tmp_path: Path, trained_dir: Path, how: str) -> Path:
    bad = tmp_path / how
    bad.mkdir()
    config = json.loads((trained_dir / "adapter_config.json").read_text())
    if how == "bad-json":
        (bad / "adapter_config.json").write_text("{not json")
    elif how == "not-lora":
        (bad / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    elif how == "no-weights":
        (bad / "adapter_config.json").write_text(json.dumps(config))
    elif how == "other-rank":  # weights of another shape than the config says
        (bad / "adapter_config.json").write_text(json.dumps({**config, "r": 4}))
        (bad / "adapter_model.safetensors").write_bytes((trained_dir / "adapter_model.safetensors").read_bytes())
    elif how == "other-targets":  # weights missing for modules the config names
        (bad / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["q_proj", "gate_proj"]}))
        (bad / "adapter_model.safetensors").write_bytes((trained_dir / "adapter_model.safetensors").read_bytes())
    return bad


BROKEN = ["absent", "empty", "bad-json", "not-lora", "no-weights", "other-rank", "other-targets"]


@pytest.mark.parametrize("how", BROKEN)
def test_a_missing_or_malformed_adapter_is_a_clear_error_naming_it(
    how: str, trained: tuple[Path, SFTReport], tiny_dir: Path, tmp_path: Path
) -> None:
    if how == "absent":
        bad = tmp_path / "absent"
    elif how == "empty":
        bad = tmp_path / "empty"
        bad.mkdir()
    else:
        bad = _broken(tmp_path, trained[0], how)
    with pytest.raises(AdapterError, match=re.escape(str(bad))):
        load_adapter(tiny(tiny_dir), bad)
    # The backend lets it through as is (an LLMError), not as "cannot load the model".
    with pytest.raises(AdapterError, match=re.escape(str(bad))) as info:
        TransformersLLM(tiny_dir, adapter=bad)
    assert isinstance(info.value, LLMError) and "cannot load a transformers model" not in str(info.value)


# --- the real default model ---------------------------------------------------------------


@pytest.mark.llm
def test_a_few_steps_on_the_default_model_give_an_adapter_the_backend_loads(
    smollm2_dir: Path, tmp_path: Path
) -> None:
    """4 examples (3 trained, 1 held out), one epoch of batch 1. Once the model is
    converted: 41 s on the 2-core CPU with one torch thread while other jobs ran there;
    90-160 s with torch's default two threads on the same busy machine."""
    examples = [EXAMPLES[0], EXAMPLES[9], EXAMPLES[3], EXAMPLES[12]]
    report = train_sft(examples, smollm2_dir, SFTConfig(epochs=1, batch_size=1, lr=1e-3), tmp_path, progress=False)
    assert (report.train_examples, report.val_examples, report.steps) == (3, 1, 3)
    assert report.val_after.loss < report.val_before.loss

    llm = TransformersLLM.default(CACHE, adapter=tmp_path, max_new_tokens=192)
    assert llm.name == f"transformers:default+lora:{tmp_path}"
    validate_call(llm.propose(EXAMPLES[5].messages, call_schema(), k=1).candidates[0].parsed)

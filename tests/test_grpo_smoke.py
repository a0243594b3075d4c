"""A GRPO smoke step: TRL's GRPOTrainer runs one step on a tiny random model, rewarded by the harness.

It runs when the training extra is installed and is skipped otherwise (CI has no torch, so it costs CI nothing). The
model and its tokenizer are built here, offline: the step proves the reward plugs into the trainer (signature,
dataset columns, logged metrics), not that a model learns; docs/training.md is the recipe for that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SKIP = "the GRPO smoke step needs torch, transformers and trl: pip install 'autotrade[train]'"
torch = pytest.importorskip("torch", reason=SKIP)
transformers = pytest.importorskip("transformers", reason=SKIP)
trl = pytest.importorskip("trl", reason=SKIP)
datasets = pytest.importorskip("datasets", reason=SKIP)
tokenizers = pytest.importorskip("tokenizers", reason=SKIP)

from autotrade.data.prepared import load_prepared  # noqa: E402  (after the skips: nothing to import without torch)
from autotrade.rl import build_tasks, reward_function  # noqa: E402
from autotrade.sandbox.pool import SandboxPool  # noqa: E402
from autotrade.status import Status  # noqa: E402

COMPLETION_TOKENS = 32
PROMPT_CHARS = 400  # the head of the real prompt: a byte-level tokenizer makes the whole of it ~8,000 tokens
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def tiny_model(folder: Path) -> tuple[object, object]:
    """A random two-layer Llama and a byte-level BPE tokenizer trained on a few strings: any text encodes, nothing
    is downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = ["def strategy_logic(row):\n    return 1 if row['sma_fast'] > row['sma_slow'] else -1\n", "```python\n"]
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    config = transformers.LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(folder)  # the trainer reads the model's name from its config's path
    fast.save_pretrained(folder)
    return transformers.LlamaForCausalLM.from_pretrained(folder), fast


def test_one_grpo_step_runs_on_the_harness_reward(tiny_data: Path, tmp_path: Path, sandbox_pool: SandboxPool) -> None:
    model, tokenizer = tiny_model(tmp_path / "model")
    data = load_prepared(tiny_data)
    row = build_tasks(data, starts=1, pool=sandbox_pool)[0].row()
    row["prompt"] = [{**turn, "content": turn["content"][:PROMPT_CHARS]} for turn in row["prompt"]]
    config = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"),
        num_generations=2,
        per_device_train_batch_size=2,  # one prompt's two generations make the step's batch
        max_steps=1,
        max_completion_length=COMPLETION_TOKENS,
        logging_steps=1,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        fp16=False,
        save_strategy="no",
        seed=0,
    )
    with reward_function(data, "rubric", max_completion_length=COMPLETION_TOKENS) as reward:
        trainer = trl.GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=config,
            train_dataset=datasets.Dataset.from_list([row] * 2),
            processing_class=tokenizer,
        )
        trainer.train()

    assert trainer.state.global_step == 1
    assert len(reward.last) == 2
    assert all(score.status in set(Status) for score in reward.last)  # a harness_error would not be
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert "rewards/autotrade_rubric/mean" in logged
    assert any(key.startswith("autotrade/status/") for key in logged)

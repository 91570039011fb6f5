#!/usr/bin/env python3
"""Makes the tiny random-weight Llama checkpoints the logits tests run on.

Two models cover the config and layout variants the loader must handle:
  tiny-llama3   GQA (4 query / 2 KV heads), Llama-3.1 `rope_scaling` (llama3 type, so the
                scaled frequencies matter even at short positions), untied embeddings,
                fp32 weights, one model.safetensors, transformers-4 config spelling.
  tiny-mistral  MistralForCausalLM, multi-head (no GQA), explicit head_dim != hidden/heads,
                tied embeddings (no lm_head tensor), bf16 weights sharded over three files
                with model.safetensors.index.json, transformers-5 `rope_parameters` spelling.
Issue 20 adds one model per family or RoPE variant the loader accepts beyond those two:
  tiny-qwen2            Qwen2ForCausalLM: q/k/v biases, a sliding_window below the prompt
                        lengths that is off (use_sliding_window false), fp32.
  tiny-qwen3            Qwen3ForCausalLM: q_norm/k_norm, head_dim 32 != hidden/heads, tied
                        embeddings, bf16, transformers-5 rope_parameters.
  tiny-mistral-sliding  MistralForCausalLM with sliding_window 16, below the prompt lengths.
  tiny-llama-yarn       yarn (factor 4, original 256 of 1024 positions: attention factor 1.139).
  tiny-llama-dynamic    dynamic NTK (factor 2): the default frequencies within 512 positions.
  tiny-llama-longrope   longrope (original 64 of 512 positions: short factors up to 64
                        tokens, long past them), original length top-level and in the block.
  tiny-llama32-tied     Llama-3.2 style: llama3 rope, tied embeddings, explicit head_dim.
Weights are drawn with a fixed seed at a scale that gives peaked (not uniform) logits, model
after model in the order below, so --models writes a subset with the same weights.
Run on the GPU machine (transformers is there); writes OUT/<name>/. Golden logits come
from make_logit_goldens.py on the written files, read back by transformers.
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

MODELS = {
    "tiny-llama3": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 512, "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
        "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        "bos_token_id": 1, "eos_token_id": [2, 3], "torch_dtype": "float32",
    },
    "tiny-mistral": {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral",
        "vocab_size": 384, "hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 32, "hidden_act": "silu",
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "sliding_window": None, "tie_word_embeddings": True,
        "bos_token_id": 1, "eos_token_id": 2, "dtype": "bfloat16",
    },
    "tiny-qwen2": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": 448, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
        "max_position_embeddings": 1024, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "rope_scaling": None, "use_sliding_window": False, "sliding_window": 32, "max_window_layers": 1,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    },
    "tiny-qwen3": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
        "vocab_size": 320, "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "hidden_act": "silu",
        "max_position_embeddings": 1024, "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "attention_bias": False, "use_sliding_window": False, "sliding_window": None,
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "dtype": "bfloat16",
    },
    "tiny-mistral-sliding": {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral",
        "vocab_size": 384, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "sliding_window": 16, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    },
    "tiny-llama-yarn": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 384, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
        "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256},
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    },
    "tiny-llama-dynamic": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 384, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "dynamic", "factor": 2.0},
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    },
    "tiny-llama-longrope": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 384, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
        "max_position_embeddings": 512, "original_max_position_embeddings": 64,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "longrope", "factor": 8.0, "original_max_position_embeddings": 64,
                         "short_factor": [1.0, 1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.0],
                         "long_factor": [1.0, 1.5, 2.5, 4.0, 6.0, 8.0, 12.0, 16.0]},
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    },
    "tiny-llama32-tied": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 512, "hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "hidden_act": "silu",
        "max_position_embeddings": 1024, "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 64},
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True,
        "bos_token_id": 1, "eos_token_id": 2, "dtype": "float32",
    },
}


def random_weights(c, gen):
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = c.get("head_dim", h // c["num_attention_heads"])
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    mat = lambda o, n: torch.randn(o, n, generator=gen) / n ** 0.5  # noqa: E731
    norm = lambda n: 0.5 + torch.rand(n, generator=gen)  # noqa: E731  (not all ones: the weight must be applied)
    w = {"model.embed_tokens.weight": torch.randn(v, h, generator=gen), "model.norm.weight": norm(h)}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w.update({p + "input_layernorm.weight": norm(h), p + "post_attention_layernorm.weight": norm(h),
                  p + "self_attn.q_proj.weight": 2 * mat(q, h), p + "self_attn.k_proj.weight": 2 * mat(kv, h),
                  p + "self_attn.v_proj.weight": mat(kv, h), p + "self_attn.o_proj.weight": mat(h, q),
                  p + "mlp.gate_proj.weight": mat(i, h), p + "mlp.up_proj.weight": mat(i, h),
                  p + "mlp.down_proj.weight": mat(h, i)})
        if c["model_type"] == "qwen2":  # Qwen2Attention: q/k/v biases, none on o_proj
            w.update({p + "self_attn.q_proj.bias": 0.5 * torch.randn(q, generator=gen),
                      p + "self_attn.k_proj.bias": 0.5 * torch.randn(kv, generator=gen),
                      p + "self_attn.v_proj.bias": 0.5 * torch.randn(kv, generator=gen)})
        if c["model_type"] == "qwen3":  # Qwen3Attention: RMSNorm over each head's q and k
            w.update({p + "self_attn.q_norm.weight": norm(hd), p + "self_attn.k_norm.weight": norm(hd)})
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = 2 * mat(v, h)
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", help="NAME,NAME,...: write only these (default: all)")
    args = ap.parse_args()
    wanted = args.models.split(",") if args.models else list(MODELS)
    unknown = set(wanted) - set(MODELS)
    if unknown:
        ap.error(f"unknown models {sorted(unknown)}; known: {list(MODELS)}")
    gen = torch.Generator().manual_seed(20261123)
    for name, c in MODELS.items():
        weights = random_weights(c, gen)  # drawn for every model: the order fixes the weights
        if name not in wanted:
            continue
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f, indent=2)
        dtype = torch.bfloat16 if c.get("dtype") == "bfloat16" else torch.float32
        w = {k: v.to(dtype).contiguous() for k, v in weights.items()}
        if name == "tiny-mistral":  # three shards with an index, as large checkpoints come
            names = sorted(w)
            shards = [names[0::3], names[1::3], names[2::3]]
            weight_map = {}
            for s, part in enumerate(shards):
                fn = f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
                save_file({k: w[k] for k in part}, os.path.join(d, fn), metadata={"format": "pt"})
                weight_map.update({k: fn for k in part})
            total = sum(t.numel() * t.element_size() for t in w.values())
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        else:
            save_file(w, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        print(f"make_tiny_models: {name}: {sum(t.numel() for t in w.values())} parameters -> {d}")


if __name__ == "__main__":
    main()

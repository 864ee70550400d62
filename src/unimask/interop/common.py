"""Shared machinery of the Hugging Face converters: tensor rules, reading and writing HF directories.

A family converter describes its checkpoint layout as a list of ``Rule`` objects, each tying one Hugging
Face tensor to one or more unimask tensors by an invertible transform (copy, transpose for GPT-2's
``Conv1D``, concatenation for fused projections). The same rules drive import and export, so the two
directions cannot drift apart, and the expected HF shape of every tensor follows from the unimask model.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from unimask.checkpoint import INDEX, WEIGHTS, read_tensors, save_tensors
from unimask.config import ModelConfig
from unimask.errors import CheckpointError, ConfigError

Kind = Literal["copy", "t", "cat", "cat_t", "row", "perm"]

# Files that travel with a model in both directions (tokenizer and generation defaults); never weights.
SIDE_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
    "generation_config.json",
)
DEFAULT_MAX_SHARD_BYTES = 5 * 2**30


@dataclass(frozen=True)
class Rule:
    """One HF tensor ``hf`` made of the unimask tensors ``unimask`` by ``kind``:

    ``copy`` (same tensor), ``t`` (transposed: GPT-2's Conv1D stores ``(in, out)``), ``cat`` (stacked
    along dim 0, e.g. a fused qkv bias), ``cat_t`` (stacked then transposed: GPT-2's ``c_attn``), ``row``
    (a leading axis of size 1: BART's ``final_logits_bias (1, V)``), ``perm`` (rows reordered: unimask row
    ``j`` is HF row ``perm[j]``; GLM's interleaved rotary pairs become unimask's rotate-half halves).
    ``aliases``: other HF names of the same tensor (tied copies), consumed on import if present and
    required to be equal; ``export_aliases`` are also written on export. An ``optional`` tensor missing
    from a checkpoint is zero (transformers treats BART's ``final_logits_bias`` so).
    """

    hf: str
    unimask: tuple[str, ...]
    kind: Kind = "copy"
    aliases: tuple[str, ...] = ()
    export_aliases: tuple[str, ...] = ()
    optional: bool = False
    perm: tuple[int, ...] = ()

    def to_hf(self, parts: Sequence[Tensor]) -> Tensor:
        if self.kind == "copy":
            return parts[0]
        if self.kind == "perm":
            inverse = torch.empty(len(self.perm), dtype=torch.long)
            inverse[list(self.perm)] = torch.arange(len(self.perm))
            return parts[0][inverse.to(parts[0].device)]
        if self.kind == "t":
            return parts[0].t()
        if self.kind == "cat":
            return torch.cat(list(parts), 0)
        if self.kind == "cat_t":
            return torch.cat(list(parts), 0).t()
        return parts[0][None]  # row

    def from_hf(self, tensor: Tensor, shapes: Sequence[torch.Size]) -> list[Tensor]:
        if self.kind == "copy":
            return [tensor]
        if self.kind == "perm":
            return [tensor[torch.tensor(self.perm, device=tensor.device)].contiguous()]
        if self.kind == "t":
            return [tensor.t().contiguous()]
        if self.kind in ("cat", "cat_t"):
            full = tensor.t() if self.kind == "cat_t" else tensor
            return [p.contiguous() for p in torch.split(full, [s[0] for s in shapes], dim=0)]
        return [tensor[0]]  # row

    def hf_shape(self, shapes: Sequence[torch.Size]) -> tuple[int, ...]:
        return tuple(self.to_hf([torch.empty(s, device="meta") for s in shapes]).shape)


def simple(hf_prefix: str, unimask_prefix: str, names: Mapping[str, str], kind: Kind = "copy") -> list[Rule]:
    """Rules for ``{hf_prefix}{hf_name}.{weight,bias}`` <- ``{unimask_prefix}{unimask_name}.{weight,bias}``."""
    rules = []
    for hf_name, um_name in names.items():
        for leaf in ("weight", "bias"):
            rules.append(Rule(f"{hf_prefix}{hf_name}.{leaf}", (f"{unimask_prefix}{um_name}.{leaf}",),
                              kind if leaf == "weight" else "copy"))
    return rules


def keep_present(rules: Sequence[Rule], state_keys: set[str]) -> list[Rule]:
    """Drop the rules whose unimask tensors the model does not have (biases switched off, tied head)."""
    return [r for r in rules if all(k in state_keys for k in r.unimask)]


class TensorSource:
    """The tensors of one HF checkpoint; ``take`` hands each out once, ``finish`` names the leftovers."""

    def __init__(self, tensors: Mapping[str, Tensor], where: str) -> None:
        self.tensors = dict(tensors)
        self.where = where
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.tensors

    def take(self, rule: Rule, shape: tuple[int, ...]) -> Tensor:
        names = [n for n in (rule.hf, *rule.aliases) if n in self.tensors]
        if not names and rule.optional:
            return torch.zeros(shape)
        if not names:
            raise CheckpointError(f"{self.where}: missing tensor '{rule.hf}'; the checkpoint does not match its "
                                  "config.json (or was saved by an unsupported model class)")
        main = self.tensors[names[0]]
        if tuple(main.shape) != shape:
            raise CheckpointError(f"{self.where}: tensor '{names[0]}' has shape {tuple(main.shape)}, config.json "
                                  f"implies {shape}")
        for other in names[1:]:
            t = self.tensors[other]
            if t.shape != main.shape or not torch.equal(t, main):
                raise CheckpointError(f"{self.where}: tensor '{other}' should be a tied copy of '{names[0]}' "
                                      "but differs; this layout is not supported")
        self.used.update(names)
        return main

    def finish(self, ignored: Sequence[str] = ()) -> None:
        left = sorted(n for n in self.tensors if n not in self.used and not any(re.search(p, n) for p in ignored))
        if left:
            raise CheckpointError(f"{self.where}: unexpected tensor '{left[0]}' ({len(left)} unexpected in all); "
                                  "the converter does not know where it belongs")


def import_state(rules: Sequence[Rule], source: TensorSource, expected: Mapping[str, Tensor],
                 ignored: Sequence[str] = ()) -> dict[str, Tensor]:
    """unimask state dict built from ``source`` by ``rules``; every expected tensor must be covered."""
    state: dict[str, Tensor] = {}
    for rule in keep_present(rules, set(expected)):
        shapes = [expected[k].shape for k in rule.unimask]
        tensor = source.take(rule, rule.hf_shape(shapes))
        for key, value in zip(rule.unimask, rule.from_hf(tensor, shapes)):
            state[key] = value
    source.finish(ignored)
    uncovered = sorted(set(expected) - set(state))
    if uncovered:  # a converter bug, not a user error
        raise RuntimeError(f"converter rules do not cover unimask tensor '{uncovered[0]}'")
    return state


def export_state(rules: Sequence[Rule], state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """HF tensors from a unimask state dict (tied head already removed) by ``rules``."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for rule in keep_present(rules, set(state)):
        tensor = rule.to_hf([state[k] for k in rule.unimask]).contiguous()
        for name in (rule.hf, *rule.export_aliases):
            out[name] = tensor
        used.update(rule.unimask)
    missing = sorted(set(state) - used)
    if missing:
        raise RuntimeError(f"converter rules do not export unimask tensor '{missing[0]}'")
    return out


# Config helpers -------------------------------------------------------------------------------------------

def first_id(value: Any) -> int | None:
    """An HF token id field may be an int, a list of ints (several EOS ids) or null."""
    if isinstance(value, list):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def check_id(value: int | None, vocab_size: int) -> int | None:
    """Token ids outside the vocabulary (a common leftover of tiny test configs) are dropped."""
    if value is None or 0 <= value < vocab_size:
        return value
    return None


def gelu_kind(act: str, where: str, gated: bool) -> tuple[str, str]:
    """HF activation name -> (unimask activation, gelu_approximate)."""
    table = {
        "gelu": ("gelu", "none"), "gelu_new": ("gelu", "tanh"), "gelu_pytorch_tanh": ("gelu", "tanh"),
        "gelu_fast": ("gelu", "tanh"), "relu": ("relu", "none"), "silu": ("silu", "none"), "swish": ("silu", "none"),
    }
    if act not in table:
        raise ConfigError(f"{where}: activation '{act}' is not supported; supported: {', '.join(sorted(table))}")
    name, approx = table[act]
    if gated:
        gated_name = {"gelu": "gated-gelu", "silu": "swiglu"}.get(name)
        if gated_name is None:
            raise ConfigError(f"{where}: gated activation '{act}' is not supported (gated gelu and silu are)")
        name = gated_name
    return name, approx


def hf_activation(config: ModelConfig) -> str:
    """unimask activation -> HF activation name (gate or not is the family's business)."""
    if config.activation in ("gelu", "gated-gelu"):
        return "gelu_new" if config.gelu_approximate == "tanh" else "gelu"
    return {"relu": "relu", "silu": "silu", "swiglu": "silu"}[config.activation]


def hf_windows(hf: dict[str, Any], n_layers: int, where: str, *, all_layers: bool = False,
               from_layer: int | None = None) -> tuple[int | None, list[int] | None]:
    """``(sliding_window, sliding_window_layers)`` of an HF config: the layers that ``layer_types`` marks
    ``sliding_attention`` (transformers 5 writes it); without it every layer (``all_layers``: Mistral) or
    those from ``from_layer`` on (Qwen2/3's ``max_window_layers``). No windowed layer gives ``(None, None)``;
    every layer windowed gives ``(window, None)``."""
    window = hf.get("sliding_window")
    types = hf.get("layer_types")
    if window is None:
        return None, None
    if isinstance(types, list):
        unknown = sorted({t for t in types if t not in ("sliding_attention", "full_attention")})
        if unknown:
            raise ConfigError(f"{where}: layer_types entry {unknown[0]!r} is not supported (sliding_attention, "
                              "full_attention)")
        layers = [i for i, t in enumerate(types[:n_layers]) if t == "sliding_attention"]
    elif all_layers:
        layers = list(range(n_layers))
    elif from_layer is not None:
        layers = list(range(from_layer, n_layers))
    else:
        layers = []
    if not layers:
        return None, None
    return int(window), None if len(layers) == n_layers else layers


def layer_types(config: ModelConfig, n_layers: int) -> list[str]:
    """HF ``layer_types`` of a stack of ``n_layers``: sliding_attention for the windowed layers."""
    return ["sliding_attention" if config.windowed_layer(i) else "full_attention" for i in range(n_layers)]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def behaviour(config: ModelConfig, *, as_causal: bool = False) -> dict[str, Any]:
    """The fields that decide what a model computes, in a canonical form (equivalent spellings agree)."""
    c = config
    d = c.to_dict()
    for name in ("dropout", "init_std"):
        d.pop(name)
    d.update(qkv_bias=c.use_qkv_bias, mlp_bias=c.use_mlp_bias, n_kv_heads=c.kv_heads, head_dim=c.head_dim_,
             n_encoder_layers=c.encoder_layers,
             decoder_start_token_id=c.start_token_id if c.arch == "encoder_decoder" else None)
    if c.activation not in ("gelu", "gated-gelu"):
        d["gelu_approximate"] = "none"
    if not c.tie_embeddings:
        d["scale_tied_output"] = False
    if c.position not in ("rope", "glm2d"):
        d["rope_theta"], d["rope_scaling"] = None, None
    else:
        scaling = dict(c.rope_scaling or {})
        kind = scaling.pop("rope_type", scaling.pop("type", "default"))
        d["rope_scaling"] = None if kind == "default" else {"rope_type": kind, **{k: float(v) for k, v in
                                                                                    scaling.items()}}
    if c.position != "learned":
        d["learned_pos_offset"] = 0
    if c.position != "t5_relative":
        d["rel_buckets"], d["rel_max_distance"] = None, None
    if c.norm != "layernorm":
        d["norm_bias"] = None
    if c.sliding_window is None or not any(c.windowed_layer(i) for i in range(max(c.n_layers, c.encoder_layers))):
        d["sliding_window"], d["sliding_window_layers"], d["local_rope_theta"] = None, None, None
    else:
        depth = max(c.n_layers, c.encoder_layers)
        d["sliding_window_layers"] = [i for i in range(depth) if c.windowed_layer(i)]
        if c.local_rope_theta == c.rope_theta and not c.rope_scaling:
            d["local_rope_theta"] = None
    if c.position != "rope":
        d["rotary_fraction"], d["local_rope_theta"] = 1.0, None
    if not any(c.windowed_layer(i) for i in range(c.encoder_layers)):
        d["encoder_window_inclusive"] = False  # no windowed encoder layer: nothing to include
    if as_causal and c.arch == "prefix":
        d["arch"] = "causal"
    return d


def differences(a: ModelConfig, b: ModelConfig, *, as_causal: bool = False) -> list[str]:
    """Names of the behaviour fields in which ``a`` and ``b`` differ."""
    da, db = behaviour(a, as_causal=as_causal), behaviour(b, as_causal=as_causal)
    return sorted(k for k in da if da[k] != db.get(k))


# Directories --------------------------------------------------------------------------------------------

def read_hf_dir(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``config.json`` and the safetensors weights (single file or sharded with an index) of an HF model."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such directory; give a Hugging Face model directory")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: no config.json; is this a Hugging Face model directory?")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object")
    if not (path / WEIGHTS).is_file() and not (path / INDEX).is_file():
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        hint = (f" (found {pickled[0]}: pickle files are never loaded; re-save with save_pretrained, which writes "
                "safetensors)") if pickled else ""
        raise CheckpointError(f"{path}: no {WEIGHTS} or {INDEX}{hint}")
    return config, read_tensors(path)


def refuse_hf_dir(path: str | Path) -> None:
    """Raise ``CheckpointError`` with the command to run when ``path`` is a Hugging Face model directory (its
    ``config.json`` has ``model_type`` and no unimask ``arch``) handed to something that wants a unimask one."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # missing or unreadable: the unimask loader says what is wrong
    if isinstance(config, dict) and "model_type" in config and "arch" not in config:
        raise CheckpointError(f"{path}: a Hugging Face '{config['model_type']}' model directory, not a unimask "
                              f"checkpoint; convert it first: unimask convert --from-hf {path} --out DIR")


def write_weights(tensors: Mapping[str, Tensor], directory: Path, max_shard_bytes: int) -> list[Path]:
    """Write ``model.safetensors``, or shards plus ``model.safetensors.index.json`` when over the limit."""
    sizes = {k: v.numel() * v.element_size() for k, v in tensors.items()}
    total = sum(sizes.values())
    meta = {"format": "pt"}
    if total <= max_shard_bytes:
        save_tensors(dict(tensors), directory / WEIGHTS, metadata=meta)
        return [directory / WEIGHTS]
    shards: list[dict[str, Tensor]] = [{}]
    filled = 0
    for name, tensor in tensors.items():
        if shards[-1] and filled + sizes[name] > max_shard_bytes:
            shards.append({})
            filled = 0
        shards[-1][name] = tensor
        filled += sizes[name]
    files, weight_map = [], {}
    for i, shard in enumerate(shards):
        file = directory / f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_tensors(shard, file, metadata=meta)
        files.append(file)
        weight_map.update({name: file.name for name in shard})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return files


def copy_side_files(source: str | Path | None, directory: Path) -> list[str]:
    """Copy tokenizer and generation files that exist in ``source`` into ``directory``; their names."""
    if source is None:
        return []
    copied = []
    for name in SIDE_FILES:
        src = Path(source) / name
        if src.is_file():
            shutil.copyfile(src, directory / name)
            copied.append(name)
    return copied


def write_tokenizer_config(directory: Path, config: ModelConfig) -> list[str]:
    """Write ``tokenizer_config.json`` and ``special_tokens_map.json`` for a ``tokenizer.json`` that came
    without them (a tokenizer trained by unimask), naming the model's BOS/EOS/PAD tokens, so that
    transformers' ``AutoTokenizer`` knows them. Nothing is written when there is no ``tokenizer.json`` or a
    ``tokenizer_config.json`` already exists; returns the names written."""
    if not (directory / "tokenizer.json").is_file() or (directory / "tokenizer_config.json").exists():
        return []
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    except Exception:  # the Rust side raises plain Exception; the copied files stay valid without ours
        return []
    special = {}
    for role, token_id in (("bos_token", config.bos_token_id), ("eos_token", config.eos_token_id),
                           ("pad_token", config.pad_token_id)):
        token = tokenizer.id_to_token(token_id) if token_id is not None else None
        if token is not None:
            special[role] = token
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": config.max_seq_len,
                "clean_up_tokenization_spaces": False, **special}
    written = []
    for name, data in (("tokenizer_config.json", settings), ("special_tokens_map.json", special)):
        if not (directory / name).exists():
            (directory / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            written.append(name)
    return written


@contextlib.contextmanager
def staged_directory(out: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``out``; rename it to ``out`` only if the block succeeds.

    A non-empty ``out`` is refused, so a conversion never overwrites or half-writes a user's directory.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out}: exists and is not empty; choose a new output directory")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise CheckpointError(f"{out}: cannot create the output directory ({exc.strerror}); choose another "
                              "--out") from None
    try:
        yield tmp
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = [
    "DEFAULT_MAX_SHARD_BYTES",
    "SIDE_FILES",
    "Rule",
    "TensorSource",
    "behaviour",
    "copy_side_files",
    "differences",
    "export_state",
    "import_state",
    "read_hf_dir",
    "refuse_hf_dir",
    "staged_directory",
    "write_tokenizer_config",
    "write_weights",
]

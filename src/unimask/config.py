"""ModelConfig: one typed description for causal decoders, prefix decoders and encoder-decoders.

The family is the ``arch`` field; everything else (norms, positions, activations, heads) is a typed field so
that behaviour never comes from a model's name. ``__post_init__`` validates, and ``from_dict`` rejects
unknown keys with a message that names them.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin, get_type_hints

from unimask.errors import ConfigError

Arch = Literal["causal", "prefix", "encoder_decoder"]
Activation = Literal["gelu", "relu", "silu", "swiglu", "gated-gelu"]
NormType = Literal["layernorm", "rmsnorm"]
Position = Literal["rope", "learned", "t5_relative", "glm2d", "none"]

ARCHS: tuple[str, ...] = get_args(Arch)
GATED_ACTIVATIONS = ("swiglu", "gated-gelu")
# Sizes past these are typing mistakes, not models: a tensor dimension beyond int32 (what kernels index
# with), or more parameters than a thousand of the largest published models (PaLM, 540B) together.
MAX_DIMENSION = 2**31 - 1
MAX_PARAMETERS = 10**15
_SIZE_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "n_encoder_layers", "n_kv_heads", "head_dim",
                "max_seq_len", "rel_buckets", "rel_max_distance", "learned_pos_offset")


def _check_type(name: str, value: Any, hint: Any) -> None:
    """Raise ConfigError unless ``value`` matches the (simple) type hint ``hint``."""
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"config field '{name}': {value!r} is not one of {list(get_args(hint))}")
        return
    if origin in (typing.Union, types.UnionType):
        for arm in get_args(hint):
            try:
                _check_type(name, value, arm)
                return
            except ConfigError:
                continue
        raise ConfigError(f"config field '{name}': {value!r} has the wrong type (expected {hint})")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"config field '{name}': expected null, got {value!r}")
        return
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config field '{name}': expected a list, got {type(value).__name__}")
        for item in value:
            _check_type(name, item, get_args(hint)[0])
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config field '{name}': expected a mapping, got {type(value).__name__}")
        return
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ConfigError(f"config field '{name}': expected a finite number, got {value!r}")
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - only simple hints are used in configs
        ok = True
    if not ok:
        raise ConfigError(
            f"config field '{name}': expected {getattr(hint, '__name__', hint)}, got {type(value).__name__} {value!r}"
        )


def unknown_key_error(where: str, unknown: list[str], known: list[str]) -> ConfigError:
    """One line naming the first unknown key, the closest known key, and the known keys."""
    first = unknown[0]
    close = difflib.get_close_matches(first, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}: unknown key '{first}'{hint}; known keys: {', '.join(sorted(known))}")


class _Validated:
    """Mixin: type checks, unknown-key rejection and a JSON round trip for config dataclasses."""

    _where: ClassVar[str] = ""  # how messages name this config ("run config", "optimizer"); default: class name
    _field_prefix: ClassVar[str] = ""  # how messages name a field of a section: "optimizer." -> 'optimizer.lr'

    def _check_types(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _check_type(self._field_prefix + f.name, getattr(self, f.name), hints[f.name])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        where = cls._where or cls.__name__
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise unknown_key_error(where, unknown, known)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Any:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cls.__name__}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Any:
        return type(self).from_dict({**self.to_dict(), **changes})


@dataclass
class ModelConfig(_Validated):
    """Architecture of one unimask model. Sizes are per layer unless said otherwise.

    ``n_layers`` is the decoder stack (the only stack of a decoder-only model); ``n_encoder_layers`` the
    encoder of an encoder-decoder (defaults to ``n_layers``). ``head_dim`` defaults to d_model/n_heads
    but may differ (T5-11B, PaLM); ``n_kv_heads`` < ``n_heads`` gives GQA, 1 gives MQA (Shazeer 2019).
    """

    arch: Arch = "causal"
    vocab_size: int = 512
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    n_encoder_layers: int | None = None
    n_kv_heads: int | None = None
    head_dim: int | None = None
    activation: Activation = "gelu"
    gelu_approximate: Literal["none", "tanh"] = "none"
    norm: NormType = "layernorm"
    norm_eps: float = 1e-5
    norm_position: Literal["pre", "post"] = "pre"
    norm_bias: bool = True
    embedding_norm: bool = False
    position: Position = "rope"
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    learned_pos_offset: int = 0
    rel_buckets: int = 32
    rel_max_distance: int = 128
    max_seq_len: int = 1024
    tie_embeddings: bool = True
    scale_tied_output: bool = False
    scale_embedding: bool = False
    scale_attention: bool = True
    bias: bool = False
    qkv_bias: bool | None = None
    mlp_bias: bool | None = None
    final_logits_bias: bool = False
    dropout: float = 0.0
    parallel_block: bool = False
    init_std: float = 0.02
    pad_token_id: int = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    # Parts of recent decoders (Qwen3, Gemma 2/3, GLM-4, T5Gemma); the defaults leave a model unchanged
    rotary_fraction: float = 1.0  # rotary on the first fraction of each head, the rest unrotated (GLM: 0.5)
    qk_norm: bool = False  # a norm over head_dim on queries and keys, before rotary (Qwen3, Gemma 3)
    sandwich_norm: bool = False  # a norm also after each sublayer, before the residual add (Gemma, GLM-4)
    norm_unit_offset: bool = False  # RMSNorm scales by (1 + weight) (Gemma)
    sliding_window: int | None = None  # windowed layers see keys less than this many positions away
    sliding_window_layers: list[int] | None = None  # the windowed layers of each stack (0-based); None: all
    local_rope_theta: float | None = None  # rotary base of the windowed layers, unscaled (Gemma 3)
    attn_softcap: float | None = None  # attention scores -> c * tanh(scores / c) (Gemma 2)
    final_logit_softcap: float | None = None  # logits -> c * tanh(logits / c) (Gemma 2/3)
    query_pre_attn_scalar: float | None = None  # attention scale scalar ** -0.5, not head_dim ** -0.5
    encoder_embedding: bool = False  # the encoder has its own token embedding (T5Gemma); else shares the decoder's
    # an encoder's windowed layers also see the keys exactly sliding_window away (|q - k| <= window: HF's
    # bidirectional sliding window, T5Gemma's encoder); else |q - k| < window, as on the causal side
    encoder_window_inclusive: bool = False

    def __post_init__(self) -> None:
        self._check_recent_parts()
        self._check_types()
        positive = ["vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len", "rel_buckets",
                    "rel_max_distance"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"config field '{name}' must be positive, got {getattr(self, name)}")
        for name in ("n_encoder_layers", "n_kv_heads", "head_dim"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"config field '{name}' must be positive, got {value}")
        for name in _SIZE_FIELDS:
            value = getattr(self, name)
            if value is not None and value > MAX_DIMENSION:
                raise ConfigError(f"config field '{name}': {value} is absurdly large (at most {MAX_DIMENSION}); "
                                  "fix the number")
        if self.arch != "encoder_decoder" and self.n_encoder_layers not in (None, 0):
            raise ConfigError(
                f"config field 'n_encoder_layers' is only for arch 'encoder_decoder' (arch is '{self.arch}')"
            )
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ConfigError(
                f"config field 'n_heads': {self.n_heads} heads do not divide d_model {self.d_model}; "
                "change one of them or set head_dim"
            )
        if self.n_heads % self.kv_heads:
            raise ConfigError(
                f"config field 'n_kv_heads': {self.kv_heads} key/value heads do not divide n_heads {self.n_heads}"
            )
        if self.position in ("rope", "glm2d") and self.head_dim_ % (4 if self.position == "glm2d" else 2):
            raise ConfigError(f"config field 'head_dim': rotary positions need an even head_dim, got {self.head_dim_}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config field 'dropout' must be in [0, 1), got {self.dropout}")
        if self.norm_eps <= 0 or self.rope_theta <= 0 or self.init_std <= 0:
            raise ConfigError("config fields 'norm_eps', 'rope_theta' and 'init_std' must be positive")
        if self.learned_pos_offset < 0:
            raise ConfigError(f"config field 'learned_pos_offset' must be >= 0, got {self.learned_pos_offset}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ConfigError(f"config field '{name}': {value} is outside the vocabulary (size {self.vocab_size})")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("type", self.rope_scaling.get("rope_type"))
            if kind not in ("linear", "llama3", "default"):
                raise ConfigError(
                    f"config field 'rope_scaling': type {kind!r} is not supported (linear, llama3)"
                )
            factor = self.rope_scaling.get("factor")
            if kind != "default" and (isinstance(factor, bool) or not isinstance(factor, (int, float))
                                      or not math.isfinite(factor) or factor <= 0):
                raise ConfigError(f"config field 'rope_scaling': type {kind!r} needs a positive number 'factor', "
                                  f"got {factor!r}")
        self._check_total_size()

    def _check_total_size(self) -> None:
        from unimask.analysis.params import count_parameters  # analysis.params imports only this module

        total = count_parameters(self).total
        if total > MAX_PARAMETERS:
            sizes = ", ".join(f"{k}={getattr(self, k)}" for k in ("vocab_size", "d_model", "n_layers", "d_ff"))
            raise ConfigError(f"config: {total:.3g} parameters is absurd (more than {MAX_PARAMETERS:.0e}); check the "
                              f"sizes ({sizes})")

    def _check_recent_parts(self) -> None:
        """Validate the fields of the recent-decoder parts (rotary fraction, windows, soft-caps, norms)."""
        self._check_types()
        if self.n_heads <= 0 or self.d_model <= 0 or (self.head_dim is not None and self.head_dim <= 0):
            return  # the general checks name these fields
        if not 0.0 < self.rotary_fraction <= 1.0:
            raise ConfigError(f"config field 'rotary_fraction' must be in (0, 1], got {self.rotary_fraction}")
        if self.rotary_fraction != 1.0:
            rot = self.rotary_dim
            if self.position != "rope" or rot < 2 or rot % 2:
                raise ConfigError(f"config field 'rotary_fraction': {self.rotary_fraction} of head_dim "
                                  f"{self.head_dim_} gives {rot} rotary dims; needs position 'rope' and an even "
                                  "number of at least 2")
        for name in ("sliding_window", "local_rope_theta", "attn_softcap", "final_logit_softcap",
                     "query_pre_attn_scalar"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"config field '{name}' must be positive, got {value}")
        if self.sliding_window is not None and self.sliding_window > self.max_seq_len:
            raise ConfigError(f"config field 'sliding_window': window {self.sliding_window} is larger than the "
                              f"context (max_seq_len {self.max_seq_len}); use a window of at most max_seq_len, or "
                              "none (null) for full attention")
        if self.sliding_window_layers is not None:
            depth = max(self.n_layers, self.n_encoder_layers or 0)
            if self.sliding_window is None:
                raise ConfigError("config field 'sliding_window_layers' needs 'sliding_window' (the window size)")
            bad = [i for i in self.sliding_window_layers if not 0 <= i < depth]
            if bad or len(set(self.sliding_window_layers)) != len(self.sliding_window_layers):
                raise ConfigError(f"config field 'sliding_window_layers': {self.sliding_window_layers} must be "
                                  f"distinct layer indices in [0, {depth})")
        for name in ("encoder_embedding", "encoder_window_inclusive"):
            if getattr(self, name) and self.arch != "encoder_decoder":
                raise ConfigError(f"config field '{name}' is only for arch 'encoder_decoder' (arch is '{self.arch}')")
        if self.norm_unit_offset and self.norm != "rmsnorm":
            raise ConfigError("config field 'norm_unit_offset' needs norm 'rmsnorm'")
        if self.sandwich_norm and (self.norm_position != "pre" or self.parallel_block):
            raise ConfigError("config field 'sandwich_norm' needs norm_position 'pre' and no parallel_block")

    def windowed_layer(self, index: int) -> bool:
        """Whether layer ``index`` of a stack uses sliding-window attention."""
        if self.sliding_window is None:
            return False
        return self.sliding_window_layers is None or index in self.sliding_window_layers

    @property
    def rotary_dim(self) -> int:
        """Rotated dims of each head (``rotary_fraction`` of head_dim)."""
        return int(self.head_dim_ * self.rotary_fraction)

    # Derived sizes -----------------------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def head_dim_(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def encoder_layers(self) -> int:
        if self.arch != "encoder_decoder":
            return 0
        return self.n_encoder_layers if self.n_encoder_layers is not None else self.n_layers

    @property
    def gated(self) -> bool:
        return self.activation in GATED_ACTIVATIONS

    @property
    def use_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def use_mlp_bias(self) -> bool:
        """Biases of the feed-forward projections (LLaMA's ``mlp_bias`` is independent of its attention bias)."""
        return self.bias if self.mlp_bias is None else self.mlp_bias

    @property
    def start_token_id(self) -> int:
        """First decoder token of an encoder-decoder (T5: pad, BART: eos)."""
        if self.decoder_start_token_id is not None:
            return self.decoder_start_token_id
        return self.pad_token_id

    # Files -------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a config is a JSON file") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
        try:
            return cls.from_json(text)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _preset_table() -> dict[str, dict[str, Any]]:
    """Named architectures. Shapes come from ../shared/REFERENCE.md (the papers and released configs)."""
    p: dict[str, dict[str, Any]] = {}
    tiny = dict(vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=176, activation="swiglu",
                norm="rmsnorm", norm_eps=1e-6, position="rope", bias=False, tie_embeddings=True, max_seq_len=256,
                eos_token_id=2, bos_token_id=1)
    p["tiny-causal"] = {**tiny, "arch": "causal"}
    p["tiny-prefix"] = {**tiny, "arch": "prefix"}
    p["tiny-encdec"] = {**tiny, "arch": "encoder_decoder", "position": "t5_relative", "n_encoder_layers": 2}
    p["tiny-glm"] = {**tiny, "arch": "prefix", "position": "glm2d"}

    # GPT-3 XL: Table 2.1 prints 24 heads of d_head 128, which is inconsistent with d_model 2048 (24 x 128 =
    # 3072); 16 heads of 128 keep d_head and the attention width d_model, and give Table D.1's 1.32B.
    gpt3 = dict(arch="causal", vocab_size=50257, activation="gelu", gelu_approximate="tanh", norm="layernorm",
                position="learned", max_seq_len=2048, bias=True, tie_embeddings=True)
    for name, (layers, d, heads, hd) in {
        "gpt3-125m": (12, 768, 12, 64), "gpt3-350m": (24, 1024, 16, 64), "gpt3-760m": (24, 1536, 16, 96),
        "gpt3-1.3b": (24, 2048, 16, 128), "gpt3-2.7b": (32, 2560, 32, 80), "gpt3-6.7b": (32, 4096, 32, 128),
        "gpt3-13b": (40, 5120, 40, 128), "gpt3-175b": (96, 12288, 96, 128),
    }.items():
        p[name] = {**gpt3, "n_layers": layers, "d_model": d, "n_heads": heads, "head_dim": hd, "d_ff": 4 * d}
    p["gpt2"] = {**p["gpt3-125m"], "max_seq_len": 1024}

    llama = dict(arch="causal", vocab_size=32000, activation="swiglu", norm="rmsnorm", norm_eps=1e-6,
                 position="rope", bias=False, tie_embeddings=False, max_seq_len=2048, bos_token_id=1, eos_token_id=2)
    for name, (layers, d, heads, ffn) in {
        "llama-7b": (32, 4096, 32, 11008), "llama-13b": (40, 5120, 40, 13824),
        "llama-33b": (60, 6656, 52, 17920), "llama-65b": (80, 8192, 64, 22016),
    }.items():
        p[name] = {**llama, "n_layers": layers, "d_model": d, "n_heads": heads, "d_ff": ffn}

    palm = dict(arch="causal", vocab_size=256000, activation="swiglu", norm="layernorm", norm_bias=False,
                position="rope", bias=False, tie_embeddings=True, parallel_block=True, n_kv_heads=1,
                head_dim=256, max_seq_len=2048)
    for name, (layers, d, heads) in {"palm-8b": (32, 4096, 16), "palm-62b": (64, 8192, 32),
                                     "palm-540b": (118, 18432, 48)}.items():
        p[name] = {**palm, "n_layers": layers, "d_model": d, "n_heads": heads, "d_ff": 4 * d}

    t5 = dict(arch="encoder_decoder", vocab_size=32128, activation="relu", norm="rmsnorm", norm_eps=1e-6,
              position="t5_relative", bias=False, tie_embeddings=True, scale_tied_output=True,
              scale_attention=False, max_seq_len=512, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    for name, (layers, d, ff, heads, dkv) in {
        "t5-small": (6, 512, 2048, 8, 64), "t5-base": (12, 768, 3072, 12, 64), "t5-large": (24, 1024, 4096, 16, 64),
        "t5-3b": (24, 1024, 16384, 32, 128), "t5-11b": (24, 1024, 65536, 128, 128),
    }.items():
        p[name] = {**t5, "n_layers": layers, "n_encoder_layers": layers, "d_model": d, "d_ff": ff,
                   "n_heads": heads, "head_dim": dkv}
    t511 = {**t5, "activation": "gated-gelu", "gelu_approximate": "tanh", "tie_embeddings": False,
            "scale_tied_output": False}
    for name, (layers, d, ff, heads, dkv) in {
        "t5-v1_1-small": (8, 512, 1024, 6, 64), "t5-v1_1-base": (12, 768, 2048, 12, 64),
        "t5-v1_1-large": (24, 1024, 2816, 16, 64), "t5-v1_1-xl": (24, 2048, 5120, 32, 64),
        "t5-v1_1-xxl": (24, 4096, 10240, 64, 64),
    }.items():
        cfg = {**t511, "n_layers": layers, "n_encoder_layers": layers, "d_model": d, "d_ff": ff,
               "n_heads": heads, "head_dim": dkv}
        p[name] = cfg
        p[name.replace("t5-v1_1", "flan-t5")] = cfg

    bart = dict(arch="encoder_decoder", vocab_size=50265, activation="gelu", norm="layernorm", norm_position="post",
                embedding_norm=True, position="learned", learned_pos_offset=2, max_seq_len=1024, bias=True,
                tie_embeddings=True, final_logits_bias=True, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                decoder_start_token_id=2)
    p["bart-base"] = {**bart, "n_layers": 6, "n_encoder_layers": 6, "d_model": 768, "n_heads": 12, "d_ff": 3072}
    p["bart-large"] = {**bart, "n_layers": 12, "n_encoder_layers": 12, "d_model": 1024, "n_heads": 16,
                       "d_ff": 4096}

    p["chatglm-6b"] = dict(arch="prefix", vocab_size=130528, d_model=4096, n_layers=28, n_heads=32, d_ff=16384,
                           activation="gelu", norm="layernorm", position="glm2d", bias=True, tie_embeddings=True,
                           max_seq_len=2048)
    p["chatglm2-6b"] = dict(arch="causal", vocab_size=65024, d_model=4096, n_layers=28, n_heads=32, n_kv_heads=2,
                            d_ff=13696, activation="swiglu", norm="rmsnorm", position="rope", bias=False,
                            qkv_bias=True, tie_embeddings=False, max_seq_len=32768)
    p["glm-130b"] = dict(arch="prefix", vocab_size=150528, d_model=12288, n_layers=70, n_heads=96, d_ff=32768,
                         activation="gated-gelu", norm="layernorm", norm_position="post", position="glm2d",
                         bias=True, tie_embeddings=True, max_seq_len=2048)

    # Recent small models, shapes from their released config.json files (Hugging Face hub)
    p["glm-4-9b"] = dict(arch="causal", vocab_size=151552, d_model=4096, n_layers=40, n_heads=32, n_kv_heads=2,
                         head_dim=128, d_ff=13696, activation="swiglu", norm="rmsnorm", norm_eps=1.5625e-07,
                         position="rope", rope_theta=10000.0, rotary_fraction=0.5, bias=False, qkv_bias=True,
                         tie_embeddings=False, max_seq_len=8192, pad_token_id=151329, eos_token_id=151329)
    p["qwen3-0.6b"] = dict(arch="causal", vocab_size=151936, d_model=1024, n_layers=28, n_heads=16, n_kv_heads=8,
                           head_dim=128, d_ff=3072, activation="swiglu", norm="rmsnorm", norm_eps=1e-6,
                           position="rope", rope_theta=1_000_000.0, qk_norm=True, bias=False, tie_embeddings=True,
                           max_seq_len=40960, bos_token_id=151643, eos_token_id=151645, pad_token_id=151643)
    gemma = dict(activation="gated-gelu", gelu_approximate="tanh", norm="rmsnorm", norm_eps=1e-6,
                 norm_unit_offset=True, sandwich_norm=True, scale_embedding=True, position="rope", bias=False,
                 tie_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    p["gemma-3-270m"] = {**gemma, "arch": "causal", "vocab_size": 262144, "d_model": 640, "n_layers": 18,
                         "n_heads": 4, "n_kv_heads": 1, "head_dim": 256, "d_ff": 2048, "qk_norm": True,
                         "rope_theta": 1_000_000.0, "local_rope_theta": 10_000.0, "query_pre_attn_scalar": 256.0,
                         "sliding_window": 512, "sliding_window_layers": [i for i in range(18) if (i + 1) % 6],
                         "max_seq_len": 32768}
    # T5Gemma 2B-2B: two Gemma 2 2B stacks (encoder and decoder with cross-attention), each its own embedding
    p["t5gemma-2b-2b"] = {**gemma, "arch": "encoder_decoder", "vocab_size": 256000, "d_model": 2304, "n_layers": 26,
                          "n_encoder_layers": 26, "n_heads": 8, "n_kv_heads": 4, "head_dim": 256, "d_ff": 9216,
                          "encoder_embedding": True, "rope_theta": 10000.0, "query_pre_attn_scalar": 256.0,
                          "attn_softcap": 50.0, "final_logit_softcap": 30.0, "sliding_window": 4096,
                          "sliding_window_layers": list(range(0, 26, 2)), "max_seq_len": 8192,
                          "encoder_window_inclusive": True, "decoder_start_token_id": 2}
    return p


PRESETS: dict[str, dict[str, Any]] = _preset_table()


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named architecture, optionally with fields changed: ``preset("llama-7b", n_layers=2)``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; known presets: {', '.join(sorted(PRESETS))}")
    return ModelConfig.from_dict({**PRESETS[name], **overrides})


def resolve_model_config(spec: str | Path | dict[str, Any] | ModelConfig) -> ModelConfig:
    """A preset name, a config.json path (or a checkpoint directory), a mapping, or a ModelConfig."""
    if isinstance(spec, ModelConfig):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        base = spec.pop("preset", None)
        return preset(base, **spec) if base else ModelConfig.from_dict(spec)
    text = str(spec)
    if text in PRESETS:
        return preset(text)
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return ModelConfig.load(path)
    raise ConfigError(f"'{text}' is neither a preset nor a config file; presets: {', '.join(sorted(PRESETS))}")


__all__ = ["ARCHS", "PRESETS", "ModelConfig", "preset", "resolve_model_config"]

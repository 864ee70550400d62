"""Training and inference FLOPs, memory, time, cost, energy and CO2 of an architecture, from its config.

* FLOPs: model FLOPs of PaLM (Chowdhery et al. 2022, appendix B): per training token ``6 N + 12 L H Q T``,
  N the weights that multiply every token (attention, MLP, output head; not embedding lookups, biases or
  norms), L layers, H query heads, Q head size, T the attended sequence length. The classic ``6 N D``
  (Kaplan et al. 2020; GPT-3's Table D.1) is reported too, with N the total parameters. Encoder-decoders
  are counted per stack: encoder weights on source tokens, decoder weights on target tokens.
* Activation memory: Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
  Models"), section 4: ``s b h (34 + 5 a s / h)`` bytes per layer for a GPT block with 16-bit activations
  and dropout, generalised here to GQA/MQA, any d_ff, gated MLPs, parallel blocks, cross-attention and no
  dropout; full recomputation keeps each layer's input plus one layer's activations.
* Time = FLOPs / (count x peak x MFU); energy = accelerator-hours x power x PUE; CO2 = energy x grid
  intensity (Patterson et al. 2021, "Carbon Emissions and Large Neural Network Training").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from unimask.analysis.params import ParamCount, count_parameters, matmul_weights
from unimask.config import ModelConfig
from unimask.errors import UnimaskError


@dataclass(frozen=True)
class Accelerator:
    """Peak dense 16-bit FLOP/s, board power (W) and an assumed on-demand price per accelerator-hour (USD).

    Peaks and powers are the vendors' data-sheet numbers; prices are rough cloud list prices and change
    often, so pass your own (``--price-per-hour``).
    """

    name: str
    peak_flops: float
    power_w: float
    price_per_hour: float


ACCELERATORS: dict[str, Accelerator] = {
    "v100": Accelerator("NVIDIA V100 SXM2 (fp16 tensor)", 125e12, 300.0, 2.50),
    "a100": Accelerator("NVIDIA A100 SXM (bf16 dense)", 312e12, 400.0, 2.00),
    "h100": Accelerator("NVIDIA H100 SXM (bf16 dense)", 989e12, 700.0, 3.00),
    "h200": Accelerator("NVIDIA H200 SXM (bf16 dense)", 989e12, 700.0, 3.50),
    "tpu-v4": Accelerator("Google TPU v4 (bf16)", 275e12, 192.0, 3.22),
}


@dataclass
class Setup:
    """What to estimate for: tokens, sequence shape, precision, accelerator, efficiency and grid.

    ``tokens`` None means 20 tokens per parameter (compute-optimal, Hoffmann et al. 2022). For an
    encoder-decoder ``seq_len`` is the source length and ``target_len`` the target length (default
    ``seq_len // 4``, close to T5's 512 -> 114 span corruption). ``batch_size`` is the micro-batch
    per accelerator used for activation memory. PUE 1.1 and 429 gCO2e/kWh are Patterson et al. 2021's
    numbers for GPT-3's datacenter.
    """

    tokens: float | None = None
    seq_len: int = 2048
    target_len: int | None = None
    batch_size: int = 1
    bytes_per_param: int = 2
    accelerator: str = "a100"
    count: int = 8
    mfu: float = 0.4
    peak_flops: float | None = None
    power_w: float | None = None
    price_per_hour: float | None = None
    pue: float = 1.1
    grid_gco2_per_kwh: float = 429.0

    def validate(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise UnimaskError(f"unknown accelerator '{self.accelerator}'; known: {', '.join(ACCELERATORS)}")
        for name in ("seq_len", "batch_size", "bytes_per_param", "count"):
            if getattr(self, name) <= 0:
                raise UnimaskError(f"'{name}' must be positive, got {getattr(self, name)}")
        if not 0 < self.mfu <= 1:  # also catches NaN
            raise UnimaskError(f"'mfu' must be in (0, 1], got {self.mfu}")
        if self.tokens is not None and self.tokens <= 0:
            raise UnimaskError(f"'tokens' must be positive, got {self.tokens}")
        if not self.pue >= 1:  # also catches NaN
            raise UnimaskError(f"'pue' must be >= 1, got {self.pue}")
        for name in ("peak_flops", "power_w"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UnimaskError(f"'{name}' must be positive, got {value}")
        for name in ("price_per_hour", "grid_gco2_per_kwh"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise UnimaskError(f"'{name}' must be >= 0, got {value}")
        if self.target_len is not None and self.target_len <= 0:
            raise UnimaskError(f"'target_len' must be positive, got {self.target_len}")


# FLOPs ------------------------------------------------------------------------------------------------

def forward_flops_per_sequence(config: ModelConfig, seq_len: int, target_len: int | None = None,
                               ) -> dict[str, float]:
    """Forward FLOPs of one sequence: ``matmul`` (2 per weight and token), ``attention`` (QK^T and AV:
    4 H Q per query-key pair, counted over the full square as PaLM does) and its ``tokens``."""
    w = matmul_weights(config)
    hq = config.n_heads * config.head_dim_
    if config.arch != "encoder_decoder":
        t = seq_len
        return {"matmul": 2.0 * w["decoder"] * t, "attention": 4.0 * config.n_layers * hq * t * t, "tokens": t}
    s, t = seq_len, (target_len if target_len is not None else max(1, seq_len // 4))
    matmul = 2.0 * ((w["encoder"] + w["cross_kv"]) * s + w["decoder"] * t)
    attention = 4.0 * hq * (config.encoder_layers * s * s + config.n_layers * (t * t + t * s))
    return {"matmul": matmul, "attention": attention, "tokens": s + t}


def training_flops(config: ModelConfig, tokens: float, seq_len: int, target_len: int | None = None,
                   ) -> dict[str, float]:
    """Training FLOPs for ``tokens`` tokens: ``total`` (3 x forward: 6N + 12LHQT per token, PaLM appendix B),
    ``per_token``, ``attention_share`` and the classic ``six_nd`` = 6 x total parameters x tokens."""
    fwd = forward_flops_per_sequence(config, seq_len, target_len)
    per_token = 3.0 * (fwd["matmul"] + fwd["attention"]) / fwd["tokens"]
    n = count_parameters(config).total
    return {
        "per_token": per_token,
        "total": per_token * tokens,
        "attention_share": fwd["attention"] / (fwd["matmul"] + fwd["attention"]),
        "six_nd": 6.0 * n * tokens,
    }


def inference_flops_per_token(config: ModelConfig, context: int, source_len: int | None = None) -> float:
    """Forward FLOPs to generate one token with a KV cache at ``context`` cached tokens (2N + 4LHQ context);
    an encoder-decoder's decoder also attends to ``source_len`` encoder states (the encoder runs once)."""
    w = matmul_weights(config)
    hq = config.n_heads * config.head_dim_
    keys = context + ((source_len or 0) if config.arch == "encoder_decoder" else 0)
    return 2.0 * w["decoder"] + 4.0 * config.n_layers * hq * keys


# Memory -----------------------------------------------------------------------------------------------

def _attention_acts(s: int, sk: int, config: ModelConfig, a: int, dropout: bool) -> float:
    """Bytes one attention layer keeps for backward (Korthikanti et al. 2022, section 4.1)."""
    d, h, hkv, q = config.d_model, config.n_heads, config.kv_heads, config.head_dim_
    out = a * s * d + a * s * h * q + 2 * a * sk * hkv * q  # projection input, Q, K and V
    out += a * h * s * sk  # softmax output
    if dropout:
        out += h * s * sk + a * h * s * sk + s * d  # softmax dropout mask and output, output dropout mask
    return out + a * s * h * q  # input of the output projection


def _mlp_acts(s: int, config: ModelConfig, a: int, dropout: bool) -> float:
    f = config.d_ff
    hidden = 4 * a * s * f if config.gated else 2 * a * s * f  # pre/post activation (and gate, product)
    return a * s * config.d_model + hidden + (s * config.d_model if dropout else 0)


def layer_activation_bytes(s: int, config: ModelConfig, a: int = 2, cross_len: int | None = None) -> float:
    """Bytes one block keeps for backward for one sequence of length ``s`` (``a`` bytes per activation);
    for a GPT block with dropout this is ``s h (34 + 5 heads s / h)`` (Korthikanti et al. 2022, eq. 2)."""
    dropout = config.dropout > 0
    norms = 1 + (0 if config.parallel_block else 1) + (1 if cross_len else 0)
    out = _attention_acts(s, s, config, a, dropout) + _mlp_acts(s, config, a, dropout)
    if cross_len:
        out += _attention_acts(s, cross_len, config, a, dropout)
    return out + norms * a * s * config.d_model


def activation_memory(config: ModelConfig, seq_len: int, batch_size: int = 1, bytes_per_act: int = 2,
                      target_len: int | None = None) -> dict[str, float]:
    """Activation bytes of one micro-batch: ``full`` (everything kept) and ``checkpointed`` (each layer's
    input kept, one layer recomputed at a time), plus the fp32 logits kept for the loss."""
    a, b, d, v = bytes_per_act, batch_size, config.d_model, config.vocab_size
    stacks: list[tuple[int, int, int | None]] = []  # (layers, length, cross length)
    if config.arch == "encoder_decoder":
        t = target_len if target_len is not None else max(1, seq_len // 4)
        stacks = [(config.encoder_layers, seq_len, None), (config.n_layers, t, seq_len)]
    else:
        t = seq_len
        stacks = [(config.n_layers, seq_len, None)]
    layers = sum(n * layer_activation_bytes(s, config, a, c) for n, s, c in stacks)
    biggest = max(layer_activation_bytes(s, config, a, c) for n, s, c in stacks if n > 0)
    inputs = sum(n * a * s * d for n, s, _ in stacks)
    extra = 2 * a * t * d + 4 * t * v  # final norm and head inputs, fp32 logits
    return {"full": b * (layers + extra), "checkpointed": b * (inputs + biggest + extra)}


def kv_cache_bytes_per_token(config: ModelConfig, bytes_per_value: int = 2) -> dict[str, float]:
    """KV cache per generated token (keys and values of every decoder layer), and per source token for the
    cross-attention cache of an encoder-decoder."""
    per_layer = 2 * config.kv_heads * config.head_dim_ * bytes_per_value
    cross = per_layer * config.n_layers if config.arch == "encoder_decoder" else 0
    return {"self": float(per_layer * config.n_layers), "cross_per_source_token": float(cross)}


# Time, cost, energy --------------------------------------------------------------------------------------

def energy_and_co2(accelerator_hours: float, power_w: float, pue: float, grid_gco2_per_kwh: float,
                   ) -> dict[str, float]:
    """Facility energy (kWh, accelerator power x PUE) and emissions (kg CO2e) of a run."""
    kwh = accelerator_hours * power_w * pue / 1000.0
    return {"energy_kwh": kwh, "co2_kg": kwh * grid_gco2_per_kwh / 1000.0}


@dataclass
class Estimate:
    """Everything ``unimask params`` reports for one architecture and setup."""

    name: str
    params: ParamCount
    setup: Setup
    tokens: float
    flops: dict[str, float]
    inference_flops_per_token: float
    memory: dict[str, float]
    run: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.name, "params": self.params.as_dict(), "setup": asdict(self.setup),
                "tokens": self.tokens, "flops": self.flops,
                "inference_flops_per_token": self.inference_flops_per_token, "memory_bytes": self.memory,
                "run": self.run}


def estimate(config: ModelConfig, setup: Setup | None = None, name: str = "model") -> Estimate:
    """Parameters, FLOPs, memory, time, cost, energy and CO2 of training ``config`` under ``setup``."""
    setup = setup or Setup()
    setup.validate()
    params = count_parameters(config)
    n = params.total
    tokens = setup.tokens if setup.tokens is not None else 20.0 * n
    flops = training_flops(config, tokens, setup.seq_len, setup.target_len)
    target = setup.target_len if setup.target_len is not None else max(1, setup.seq_len // 4)
    infer = inference_flops_per_token(config, target if config.arch == "encoder_decoder" else setup.seq_len,
                                      source_len=setup.seq_len)
    pb = setup.bytes_per_param
    acts = activation_memory(config, setup.seq_len, setup.batch_size, pb, setup.target_len)
    kv = kv_cache_bytes_per_token(config, pb)
    memory = {
        "weights": float(n * pb), "gradients": float(n * pb), "adam_states": 8.0 * n,
        "master_weights": 4.0 * n if pb < 4 else 0.0,
        "activations": acts["full"], "activations_checkpointed": acts["checkpointed"],
        "kv_cache_per_token": kv["self"], "cross_kv_per_source_token": kv["cross_per_source_token"],
    }
    memory["training_total"] = (memory["weights"] + memory["gradients"] + memory["adam_states"]
                                + memory["master_weights"] + memory["activations"])
    acc = ACCELERATORS[setup.accelerator]
    peak = setup.peak_flops or acc.peak_flops
    seconds = flops["total"] / (setup.count * peak * setup.mfu)
    hours = seconds / 3600.0 * setup.count
    power = setup.power_w or acc.power_w
    price = setup.price_per_hour if setup.price_per_hour is not None else acc.price_per_hour
    run = {"seconds": seconds, "days": seconds / 86400.0, "accelerator_hours": hours, "cost_usd": hours * price,
           "peak_flops": peak, "power_w": power, "price_per_hour": price,
           **energy_and_co2(hours, power, setup.pue, setup.grid_gco2_per_kwh)}
    return Estimate(name=name, params=params, setup=setup, tokens=tokens, flops=flops,
                    inference_flops_per_token=infer, memory=memory, run=run)


__all__ = [
    "ACCELERATORS",
    "Accelerator",
    "Estimate",
    "Setup",
    "activation_memory",
    "energy_and_co2",
    "estimate",
    "forward_flops_per_sequence",
    "inference_flops_per_token",
    "kv_cache_bytes_per_token",
    "layer_activation_bytes",
    "training_flops",
]

"""Data parallelism applied from outside the model: DDP or FSDP2 (``fully_shard`` per block).

Launch with ``torchrun --nproc_per_node N -m unimask train ... --set parallel=ddp|fsdp2``. NCCL on CUDA,
gloo on CPU. The model code stays single-device (DESIGN.md, house style 5); this module wraps it, gathers
full state dicts for saving on rank 0 and loads name-keyed optimizer states on any number of ranks.

DDP: Li et al. 2020, "PyTorch Distributed". FSDP: Zhao et al. 2023, "PyTorch FSDP"; FSDP2 shards each
parameter as a DTensor along dim 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from unimask.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    """Where this process runs: rank, world size, device and the wrapping in use."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    parallel: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"config field 'device': {preference} asked for but no CUDA device is available")
        if preference == "cuda":
            preference = f"cuda:{local_rank}"
        device = torch.device(preference)
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def setup(parallel: str, device: str = "auto") -> DistContext:
    """Join the process group that torchrun describes (env ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and parallel == "none":
        raise ConfigError(f"launched on {world} processes but 'parallel' is none; add --set parallel=ddp or fsdp2")
    dev = _pick_device(device, local_rank)
    if world == 1:
        if parallel != "none":
            log.warning("parallel=%s on a single process: training without wrapping", parallel)
        return DistContext(device=dev, parallel="none")
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, parallel=parallel)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP around the model, or FSDP2: ``fully_shard`` on every Transformer block, then on the root."""
    if not ctx.distributed:
        return model
    if ctx.parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    for stack_name in ("encoder", "decoder"):
        stack = getattr(model, stack_name, None)
        if stack is None:
            continue
        for block in stack.layers:
            fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The single-device model inside a DDP wrapper (FSDP2 modifies the module in place)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, ctx: DistContext, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if not ctx.distributed or sync:
        if ctx.parallel == "fsdp2" and ctx.distributed:
            model.set_requires_gradient_sync(True)  # type: ignore[operator]
        yield
        return
    if ctx.parallel == "ddp":
        with model.no_sync():  # type: ignore[operator]
            yield
        return
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    yield


def all_reduce_sum(values: Tensor, ctx: DistContext) -> Tensor:
    """Sum a tensor over ranks (in place on a copy); identity on one process."""
    if not ctx.distributed:
        return values
    out = values.detach().clone().to(ctx.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_json(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's JSON-able object (data positions), in rank order."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def _options(ctx: DistContext, **kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(**kw) if ctx.distributed else None


def full_model_state(model: nn.Module, ctx: DistContext) -> dict[str, Tensor]:
    """The unsharded state dict on CPU (collective under FSDP2; only rank 0's result is complete)."""
    if not ctx.distributed:
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(ctx, full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext) -> dict[str, Any]:
    """Optimizer state keyed by parameter name (independent of the rank count); collective under FSDP2."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    options = _options(ctx, full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any],
                         ctx: DistContext) -> None:
    """Load a name-keyed full optimizer state (every rank passes the same full state)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_options(ctx, full_state_dict=True))

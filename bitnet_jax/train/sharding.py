"""One run over many devices: a jax.sharding Mesh with axes (data, fsdp, tensor) and where each array of a training
job lives on it. XLA's SPMD partitioner does the rest from these annotations: every collective a sharded matmul, a
BitLinear statistic (mean |W| over a whole kernel, a per-token absmax over a whole feature dimension) or a loss mean
needs is inserted by the compiler, so every recipe and layout computes what it computes on one device.

- batches: the batch dimension over data x fsdp;
- parameters and AdamW moments: column-parallel kernels (q, k, v, gate, up, LM head: (in, out)) as (fsdp, tensor),
  row-parallel ones (o, down) as (tensor, fsdp), the embedding's vocabulary over fsdp, norms replicated; a dimension
  an axis does not divide stays whole on that axis;
- a group's leading run axis, step counters, schedules and metrics: replicated.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bitnet_jax.config import MeshConfig

AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")
COLUMN = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "lm_head")
ROW = ("o_proj", "down_proj")


def make_mesh(cfg: MeshConfig, devices=None) -> Mesh:
    """The (data, fsdp, tensor) mesh over the first data x fsdp x tensor of `devices` (default: all of them)."""
    devices = list(devices if devices is not None else jax.devices())
    shape = cfg.shape(len(devices))
    return Mesh(np.array(devices[:int(np.prod(shape))]).reshape(shape), AXES)


def param_spec(path: str, shape: tuple[int, ...], mesh: Mesh) -> P:
    """Where a parameter lives, from its path in the model (e.g. "['blocks'][0]['attn']['q_proj']['kernel']")."""
    if path.endswith("['kernel'].value") or path.endswith("['kernel']"):
        axes = ("fsdp", "tensor") if any(f"'{n}'" in path for n in COLUMN) else \
            ("tensor", "fsdp") if any(f"'{n}'" in path for n in ROW) else ("fsdp", None)
    elif "['embedding']" in path:
        axes = ("fsdp", None)
    else:
        axes = (None,) * len(shape)
    return P(*(a if a is not None and dim % mesh.shape[a] == 0 else None for a, dim in zip(axes, shape)))


@dataclass(frozen=True)
class Layout:
    """The shardings of one job's arrays on its mesh."""

    mesh: Mesh
    state: dict  # pytree of NamedSharding matching the (group-stacked) train state
    replicated: NamedSharding

    @classmethod
    def of(cls, mesh: Mesh, param_def, state: dict, tx: optax.GradientTransformation, leading: int = 1) -> "Layout":
        """`param_def`: the treedef of the model's parameters (FlatModel.param_def, for their paths); `state`: a
        train state whose arrays carry `leading` axes in front (1: a group's stacked runs; 0: one bare state)."""
        tree = jax.tree.unflatten(param_def, state["params"])
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
        specs = [param_spec(path, x.shape[leading:], mesh) for path, x in zip(paths, state["params"], strict=True)]
        named = [NamedSharding(mesh, P(*(None,) * leading, *spec)) for spec in specs]
        replicated = NamedSharding(mesh, P())
        opt = optax.tree_map_params(tx, lambda _, s: s, state["opt"], named,
                                    transform_non_params=lambda _: replicated)
        shardings = {**jax.tree.map(lambda _: replicated, state), "params": named, "opt": opt}
        return cls(mesh, shardings, replicated)

    def batch(self, leading: int) -> NamedSharding:
        """Batches whose batch dimension follows `leading` others (e.g. 1 for (group, batch, seq+1))."""
        return NamedSharding(self.mesh, P(*(None,) * leading, BATCH))

    @property
    def batch_devices(self) -> int:
        return self.mesh.shape["data"] * self.mesh.shape["fsdp"]


def place(tree, shardings):
    """jax.device_put onto the mesh. With several processes every process holds the whole value (built or restored
    alike) and gives its own devices their parts: committed arrays go through host memory, since JAX does not move
    an array from one process's device to another's."""
    if jax.process_count() > 1:
        tree = jax.device_get(tree)
    return jax.device_put(tree, shardings)

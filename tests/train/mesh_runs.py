"""Run by tests/train/test_mesh.py in a process with 4 CPU devices: tiny runs on several meshes, a run resumed on
another mesh, where the layout puts each array, and the benchmark's step on meshes. Prints one JSON object."""

import json
import sys

import jax

from bitnet_jax import config, train
from bitnet_jax.files import read_metrics
from bitnet_jax.train.sharding import Layout, make_mesh
from bitnet_jax.train.state import build_training

TINY = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64", "model.seq_len=32",
        "train.batch_size=4", "train.warmup_steps=2", "train.eval_every=6", "train.eval_batches=2",
        "train.log_every=1", "train.ckpt_every=6", "data.max_bytes=60000", "tracking.progress=false"]
MESHES = {"fp16": ["111", "221", "212"], "bitnet_b158": ["111", "221", "212"]}  # data x fsdp x tensor


def mesh_args(mesh: str) -> list[str]:
    return [f"mesh.data={mesh[0]}", f"mesh.fsdp={mesh[1]}", f"mesh.tensor={mesh[2]}"]


def losses(path: str) -> list[float]:
    return [r["loss"] for r in read_metrics(f"{path}/metrics.jsonl") if "loss" in r]


def main(out: str) -> None:
    result = {"devices": len(jax.devices()), "losses": {}, "val": {}}
    for recipe, meshes in MESHES.items():
        for mesh in meshes:
            path = f"{out}/{recipe}_{mesh}"
            train.run(config.load(None, TINY + [f"recipe={recipe}", "train.steps=12", *mesh_args(mesh)]), path)
            result["losses"][f"{recipe}_{mesh}"] = losses(path)
            result["val"][f"{recipe}_{mesh}"] = json.load(open(f"{path}/summary.json"))["final_val_loss"]
    # a checkpoint written on one mesh (the 12-step run on data x fsdp) resumed on another (data x tensor) to 18 steps,
    # against the one-device run resumed on one device
    for name, first, second in (("moved", "221", "212"), ("still", "111", "111")):
        path = f"{out}/bitnet_b158_{first}"
        base = TINY + ["recipe=bitnet_b158", "train.steps=18"]
        train.run(config.load(None, base + [*mesh_args(second)]), path, resume=True)
        result["losses"][f"resume_{name}"] = losses(path)
    try:
        train.run(config.load(None, TINY + ["train.batch_size=6", *mesh_args("221")]), f"{out}/odd_batch")
    except Exception as e:  # noqa: BLE001 - the test checks which error and its text
        result["batch_error"] = str(e)
    # where the arrays live on a 1 x 2 x 2 mesh
    cfg = config.load(None, TINY + ["recipe=bitnet_b158", *mesh_args("122")])
    training = build_training(cfg)
    stacked = jax.tree.map(lambda x: x[None], training.state)
    layout = Layout.of(make_mesh(cfg.mesh), training.model.param_def, stacked, training.optimizer)
    placed = jax.device_put(stacked, layout.state)
    tree = jax.tree.unflatten(training.model.param_def, placed["params"])
    shards = {jax.tree_util.keystr(p): [list(s.data.shape) for s in x.addressable_shards][:1] + [list(x.shape)]
              for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
    result["shards"] = {k: v for k, v in shards.items() if "blocks'][0]" in k or "embed" in k}
    mu = [x for x in jax.tree.leaves(placed["opt"]) if x.ndim == 3]
    result["opt_shards"] = sorted({str(x.sharding.spec) for x in mu})
    from bitnet_jax.train import bench

    result["bench"] = {mesh: {r["recipe"]: (r["loss"], r["devices"]) for r in bench.run(
        "tiny", ["fp16", "bitnet_b158"], batch_size=8, steps=2, warmup=1, overrides=mesh_args(mesh))}
        for mesh in ("111", "122")}
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])

"""One run over a device mesh (train/sharding.py): the losses of data, fsdp and tensor meshes against one device,
a checkpoint resumed on another mesh, where the arrays live, and the mesh config's errors. The runs happen in a
child process with 4 CPU devices (tests/train/mesh_runs.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitnet_jax import config
from bitnet_jax.errors import ConfigError

RTOL = 2e-3


@pytest.fixture(scope="module")
def mesh_result(tmp_path_factory):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("mesh_runs.py")),
                           str(tmp_path_factory.mktemp("mesh"))], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("recipe", ["fp16", "bitnet_b158"])
def test_every_mesh_trains_the_losses_of_one_device(mesh_result, recipe):
    assert mesh_result["devices"] == 4
    runs = {k: v for k, v in mesh_result["losses"].items() if k.startswith(f"{recipe}_")}
    one = runs.pop(f"{recipe}_111")
    assert len(one) == 12 and sorted(runs) == [f"{recipe}_212", f"{recipe}_221"]  # data x tensor, data x fsdp
    for name, losses in runs.items():
        np.testing.assert_allclose(losses, one, rtol=RTOL, err_msg=name)
        assert mesh_result["val"][name] == pytest.approx(mesh_result["val"][f"{recipe}_111"], rel=RTOL)


def test_a_checkpoint_resumes_on_another_mesh(mesh_result):
    moved, still = mesh_result["losses"]["resume_moved"], mesh_result["losses"]["resume_still"]
    assert len(moved) == len(still) == 18
    np.testing.assert_allclose(moved, still, rtol=RTOL)
    assert moved[:12] == mesh_result["losses"]["bitnet_b158_221"]  # the resume went on from that run's record


def test_parameters_and_moments_are_sharded_as_the_layout_says(mesh_result):
    """On data 1 x fsdp 2 x tensor 2 (leading axis: the group's runs): column-parallel kernels split both ways,
    row-parallel ones tensor-first, the embedding's vocabulary over fsdp, norms whole."""
    shards = {k.replace(".value", ""): v for k, v in mesh_result["shards"].items()}
    block = "['blocks'][0]"
    assert shards[f"{block}['attn']['q_proj']['kernel']"] == [[1, 16, 16], [1, 32, 32]]
    assert shards[f"{block}['mlp']['gate_proj']['kernel']"] == [[1, 16, 32], [1, 32, 64]]
    assert shards[f"{block}['mlp']['down_proj']['kernel']"] == [[1, 32, 16], [1, 64, 32]]
    assert shards[f"{block}['attn']['q_proj']['norm']['scale']"] == [[1, 32], [1, 32]]
    assert shards["['embed']['embedding']"] == [[1, 128, 32], [1, 256, 32]]
    assert mesh_result["opt_shards"] == ["P(None, 'fsdp', 'tensor')", "P(None, 'fsdp', None)",
                                         "P(None, 'tensor', 'fsdp')"]


def test_the_benchmark_step_runs_on_a_mesh_with_the_losses_of_one_device(mesh_result):
    bench = mesh_result["bench"]
    for mesh in ("122",):
        for recipe, (loss, devices) in bench[mesh].items():
            assert devices == 4 and bench["111"][recipe][1] == 1
            assert loss == pytest.approx(bench["111"][recipe][0], rel=RTOL)


@pytest.mark.parametrize("mesh,devices,expected", [
    ({}, 8, (8, 1, 1)), ({"fsdp": 2}, 8, (4, 2, 1)), ({"data": 2, "tensor": -1}, 8, (2, 1, 4)),
    ({"data": 1}, 8, (1, 1, 1)),
])
def test_mesh_shape(mesh, devices, expected):
    assert config.MeshConfig(**mesh).shape(devices) == expected


@pytest.mark.parametrize("mesh,devices,message", [
    ({"data": 0}, 4, "at most one -1"), ({"data": -1, "fsdp": -1}, 4, "at most one -1"),
    ({"fsdp": 3}, 4, "cannot be split"), ({"data": 2, "tensor": 4}, 4, "this process sees 4"),
])
def test_mesh_errors_are_one_line(mesh, devices, message):
    with pytest.raises(ConfigError, match=message):
        config.MeshConfig(**mesh).shape(devices)


def test_a_mesh_the_batch_or_devices_cannot_fill_is_refused_before_training(mesh_result, tmp_path, tiny):
    from bitnet_jax import train

    assert mesh_result["batch_error"] == ("train.batch_size=6 does not split over mesh data x fsdp = 4 devices; use "
                                          "a multiple of 4")
    with pytest.raises(ConfigError, match="mesh: data x fsdp x tensor = 2 device.s., but this process sees 1"):
        train.run(config.load(None, tiny + ["mesh.data=2"]), tmp_path / "r")  # one CPU device in this process
    assert not (tmp_path / "r").exists()

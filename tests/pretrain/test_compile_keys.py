"""``apply_compile`` compiles each block's forward and leaves the module tree alone: the
parameter names and checkpoint keys of a compiled (and sharded) model are the eager model's."""

import torch
import torch.distributed as dist

from model import Llama, LlamaConfig
from pretrain.training.parallelize import build_parallel_model

CONFIG = LlamaConfig.from_name("debug-100k", vocab_size=512)


def test_a_compiled_sharded_model_has_the_eager_models_state_dict_keys():
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        model = build_parallel_model(CONFIG, torch.device("cpu"), init_device_mesh("cpu", (1,)),
                                     init_seed=0, compile=True)
        keys = list(model.state_dict())
        names = [name for name, _ in model.named_parameters()]
    finally:
        dist.destroy_process_group()
    eager = Llama(CONFIG)
    assert keys == list(eager.state_dict())
    assert names == [name for name, _ in eager.named_parameters()]
    assert not any("_orig_mod" in key for key in keys)


def test_a_compiled_models_state_dict_loads_strictly_into_an_eager_model():
    compiled = build_parallel_model(CONFIG, torch.device("cpu"), init_seed=3, compile=True)
    eager = Llama(CONFIG)
    eager.load_state_dict(compiled.state_dict(), strict=True)
    torch.testing.assert_close(eager.layers[1].feed_forward.w2.weight,
                               compiled.layers[1].feed_forward.w2.weight, rtol=0, atol=0)

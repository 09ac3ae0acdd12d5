"""AdamW parameter groups: weight decay only on the blocks' matrices and the output head."""

import torch

from model import Llama, LlamaConfig
from pretrain.training.optim import build_adamw, param_groups


def _names(model, group):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in group["params"]}


def test_norms_and_embeddings_are_not_decayed_matrices_are():
    model = Llama(LlamaConfig.from_name("debug-1m"))  # untied
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "tok_embeddings.weight" in _names(model, no_decay)
    assert "norm.weight" in _names(model, no_decay)
    assert "layers.0.attention_norm.weight" in _names(model, no_decay)
    assert "layers.0.attention.wq.weight" in _names(model, decay)
    assert "layers.3.feed_forward.w2.weight" in _names(model, decay)
    assert "output.weight" in _names(model, decay)
    assert all(p.ndim == 2 for p in decay["params"])


def test_every_parameter_is_in_exactly_one_group_with_tied_embeddings_once():
    model = Llama(LlamaConfig.from_name("debug-100k"))  # tied: output.weight is tok_embeddings.weight
    groups = param_groups(model, weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len({id(p) for p in model.parameters()})
    assert model.output.weight is model.tok_embeddings.weight
    assert id(model.tok_embeddings.weight) in {id(p) for p in groups[1]["params"]}


def test_adamw_step_leaves_no_decay_params_untouched_when_gradients_are_zero():
    model = Llama(LlamaConfig.from_name("debug-100k"))
    with torch.no_grad():
        model.norm.weight.fill_(2.0)
    optimizer = build_adamw(model, lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.5)
    matrix_before = model.layers[0].attention.wq.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.equal(model.norm.weight, torch.full_like(model.norm.weight, 2.0))
    assert torch.allclose(model.layers[0].attention.wq.weight, matrix_before * (1 - 0.1 * 0.5))

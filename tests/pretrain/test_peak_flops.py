"""The device peak table behind MFU: each GPU name `torch.cuda.get_device_name()` reports maps
to its part's dense bf16 peak (the H100's three parts differ)."""

import pytest

from pretrain.training.metrics import peak_flops_of


@pytest.mark.parametrize(("name", "tflops"), [
    ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H200", 989.0),
    ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
])
def test_each_gpu_name_gets_its_parts_dense_bf16_peak(name, tflops):
    assert peak_flops_of(name) == tflops * 1e12


def test_an_unknown_gpu_has_no_peak_so_mfu_is_omitted():
    assert peak_flops_of("NVIDIA GeForce GTX 1080") is None

"""slm-pretrain: pretrain small Llama-style language models from scratch."""

from setuptools import find_packages, setup

EXTRAS = {
    # CUDA-only kernels that install from wheels on GPU nodes; never needed on CPU. flash-attn
    # (source archive only) and xformers (wheels pin one torch) are installed by hand (README).
    "cuda": ["liger-kernel", "torchao"],
    # Hugging Face interop: exports, parity tests, Hub releases.
    "hf": ["transformers>=4.45", "huggingface_hub>=0.25", "tokenizers>=0.20", "protobuf"],
    # lm-evaluation-harness with its hf backend: `slm eval`'s numbers are checked against it and
    # TinyLlama's table is reproduced with it (README, Evaluation). `slm eval` itself needs none.
    "eval": ["lm-eval[hf]>=0.4.9,<0.5"],
    # Weights & Biases beside CSV and TensorBoard (the `wandb:` section of `slm pretrain`).
    "wandb": ["wandb"],
    # `slm data curate`: datatrove's pipelines, filters and dedup; spaCy's blank English
    # pipeline splits words (no model download); xxhash<4 because datatrove hashes str.
    "curate": ["datatrove>=0.10", "spacy>=3.8", "xxhash<4"],
    # liger-kernel (and Triton with it) and torchao so the GPU kernels' parity tests run on a
    # CPU too: liger's under Triton's interpreter (tests/kernels/liger), float8 on torch's CPU
    # float8 matmul (tests/kernels/test_float8.py).
    "test": ["pytest>=8", "pytest-timeout", "transformers>=4.45", "huggingface_hub>=0.25",
             "tokenizers>=0.20", "protobuf", "pyyaml", "liger-kernel", "torchao",
             "lm-eval[hf]>=0.4.9,<0.5", "wandb", "datatrove>=0.10", "spacy>=3.8", "xxhash<4"],
}

setup(
    name="slm-pretrain",
    version="0.1.0",
    description="Pretrain small Llama-style language models: TinyLlama's recipe, rebuilt cleanly.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["model*", "tokenizer*", "data*", "pretrain*"]),
    install_requires=[
        "torch>=2.11,<2.14",
        "lightning>=2.4",
        "sentencepiece>=0.2",
        "zstandard>=0.22",
        "numpy>=1.24",
        "pyarrow>=14",
        "safetensors>=0.4",
        "jsonargparse[signatures]>=4.30",
        "tqdm>=4.60",
        "pyyaml>=6",
        "scipy>=1.10",
        "threadpoolctl>=3.1",
        "matplotlib>=3.7",
        "tensorboard>=2.14",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["slm = pretrain.cli:main"]},
)

"""spec_cascade_jax: speculative cascades (Narasimhan et al., ICLR 2025) in JAX/Flax."""

import setuptools

CORE = [
    "jax>=0.10,<0.13",
    "flax>=0.10",
    "optax",
    "numpy",
    "msgpack",
    "safetensors",      # Hugging Face weights without torch
    "tensorstore",      # t5x checkpoints (zarr array specs)
    "orbax-checkpoint",
    "sentencepiece",
    "sacrebleu",
    "tqdm",
    "matplotlib",       # the main job writes its trade-off plot
    "gin-config",
    "absl-py",
    "polib",            # gettext catalogs (data builder)
]

EXTRAS = {
    # torch: .ci/run installs the CPU wheel (torch==2.13.0) first, so this
    # unpinned requirement is already satisfied there.
    # pytest-xdist: the suite runs in two processes (README's test command).
    "test": ["pytest", "pytest-xdist", "scipy", "torch", "transformers", "tokenizers",
             "nbclient", "nbformat", "ipykernel"],
    # Decoder-only LMs' own tokenizers (tokenizer.json) for the prompted tasks.
    "lm": ["tokenizers"],
    "seqio": ["seqio", "tensorflow", "tensorflow-datasets", "rouge-score"],
    "plots": ["matplotlib"],
}

setuptools.setup(
    name="spec_cascade_jax",
    version="0.1.0",
    description="Speculative cascades: cascades + speculative decoding in JAX/Flax",
    packages=setuptools.find_packages(include=["spec_cascade_jax", "spec_cascade_jax.*"]),
    package_data={"spec_cascade_jax": ["assets/**/*"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require=EXTRAS,
)

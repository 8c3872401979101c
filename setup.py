"""cxr-sr: distributed SRGAN training and deployment for 4x chest X-ray super-resolution."""
from setuptools import find_namespace_packages, setup

PACKAGES = ["data_prep", "dist_train", "export", "benchmarks", "launch"]

setup(
    name="cxr-sr",
    version="0.1.0",
    description="Distributed training and deployment of 4x super-resolution for chest X-rays",
    python_requires=">=3.10",
    # namespace discovery so that data folders (dist_train/configs, export/cpp, launch/configs)
    # ship as package data
    packages=find_namespace_packages(include=[name for p in PACKAGES for name in (p, p + ".*")]),
    # *.pt and MODEL_CARD.md: the shipped default model (export/models) and its card
    package_data={"": ["*.yaml", "*.json", "*.txt", "*.cpp", "*.h", "*.sh", "*.sbatch", "*.j2", "CMakeLists.txt",
                       "*.pt", "MODEL_CARD.md"]},
    include_package_data=True,
    install_requires=[
        # torch 2.11 is what the GPU machines ship; 2.14.1 what the CPU machines install.
        "torch>=2.11,<2.15",
        "torchvision>=0.26,<0.30",
        "deepspeed>=0.19,<0.20",
        "nvidia-dali-cuda130>=2.4,<3",
        "webdataset>=1.0,<2",
        "kaggle>=2.0",
        "tensorboard>=2.18",
        "torchmetrics>=1.6",
        "numpy>=1.26",
        "pillow>=10",
        "pyyaml>=6",
        "tqdm>=4.66",
        "pydicom>=3.0",
        "pylibjpeg>=2.0",
        "pylibjpeg-libjpeg>=2.1",
        "isal>=1.7",  # 2x faster zlib for the PNG integrity check while sharding
        "pydicom-data>=1.0",  # the demo's real chest radiograph (RG1_UNCR.dcm), read locally
        "streamlit>=1.40",  # cxr-sr app
    ],
    extras_require={
        "dev": ["pytest>=8", "selenium>=4.20"],  # selenium drives Debian's chromium in the app test
    },
    entry_points={"console_scripts": ["cxr-sr=launch.cli:main"]},
)

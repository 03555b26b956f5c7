"""Installs the img2lidar plugin package ``projects.img2lidar`` (editable or normal mode).

``projects`` is a namespace package (PEP 420): this distribution owns ``projects.img2lidar``
only, so other plugins that install their own ``projects.<name>`` live beside it. The heavy
dependencies (torch, mmcv with ops, spconv) need a controlled install order and are installed by
``tools/setup_env.sh``; see README.md.
"""
from setuptools import find_namespace_packages, setup

setup(
    name='img2lidar',
    version='0.1.0',
    description='Self-supervised image-to-lidar distillation (SLidR, ST-SLidR, relational) '
    'as an MMDetection3D plugin',
    packages=find_namespace_packages(include=['projects.img2lidar', 'projects.img2lidar.*']),
    # the split lists (projects/img2lidar/splits) travel with the package
    package_data={'projects.img2lidar.splits': ['*.txt', '*.md']},
    python_requires='>=3.9',
    install_requires=[
        'mmengine==0.10.7', 'mmcv==2.1.0', 'mmdet==3.3.0', 'mmdet3d==1.4.0',
        'nuscenes-devkit==1.2.0', 'numpy<2'
    ],
    license='Apache-2.0',
)

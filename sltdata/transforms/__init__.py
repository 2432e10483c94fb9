"""Transforms and augmentations over pose landmarks, applied at load time (the store stays raw).

``load_transform_config`` reads and validates a config (YAML path, dict or None for the ISLR
defaults), ``build_pipeline`` turns it into a callable over one (frames, points, 3) sequence, and
``sample_rng`` gives each sample reproducible draws. ``sltdata.transforms.torch_ops.BatchAugment`` does
the same on a padded torch batch (imported separately: torch is an optional dependency).
``Pipeline.feature_layout`` says what each feature column is: read features back through it.
"""

from sltdata.transforms.config import (AugmentConfig, NormalizeConfig, TemporalConfig, TransformConfig,
                                       load_transform_config, selection_indices)
from sltdata.transforms.numpy_ops import AugmentDraw, FeatureLayout
from sltdata.transforms.pipeline import Pipeline, build_pipeline, sample_rng

__all__ = ["AugmentConfig", "AugmentDraw", "FeatureLayout", "NormalizeConfig", "Pipeline", "TemporalConfig",
           "TransformConfig", "build_pipeline", "load_transform_config", "sample_rng", "selection_indices"]

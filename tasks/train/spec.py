"""The training stages, as tasks.pipeline.registry knows them: `train-gan` (a run), its
`gan-checkpoint` objects, `train-autoencoder`, and `checkpoint`, the stage of every model
version (trained here or imported), hence the model report."""

from __future__ import annotations

from musika_model.backends import BackendError
from musika_model.checkpoints import CheckpointError
from musika_model.devices import DeviceUnavailableError
from musika_model.train_config import TrainConfigError
from musika_model.training import TrainingDiverged
from musika_model.training_data import TrainingDataError
from tasks.pipeline.models import NotAModelError
from tasks.pipeline.registry import StageSpec
from tasks.train import autoencoder, gan
from tasks.train.config import TrainingInputError
from tasks.train.params import AutoencoderTrainingParams, GanTrainingParams
from tasks.train.report import model_report

SPECS = (
    StageSpec(
        gan.STAGE,
        gan.STAGE_VERSION,
        params=GanTrainingParams,
        user_errors=(
            TrainingInputError,
            NotAModelError,
            CheckpointError,
            TrainConfigError,
            TrainingDiverged,
            TrainingDataError,
            DeviceUnavailableError,
            BackendError,
        ),
    ),
    StageSpec(gan.CHECKPOINT_STAGE, gan.CHECKPOINT_STAGE_VERSION),
    StageSpec(gan.MODEL_STAGE, None, report=model_report),
    StageSpec(
        autoencoder.STAGE,
        autoencoder.STAGE_VERSION,
        params=AutoencoderTrainingParams,
        user_errors=(autoencoder.AutoencoderStageError, autoencoder.AutoencoderDivergedError),
    ),
)

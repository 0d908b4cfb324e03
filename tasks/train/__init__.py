"""Training stages: params.py (the GAN and autoencoder training settings), config.py (a run's
TrainConfig and the refusals before it starts, without Prefect), gan.py (store stages `train-gan`
and `gan-checkpoint`: plan, resumable run, checkpoints and their Prefect side), autoencoder.py
(store stage `train-autoencoder`), report.py (with templates/report.html.j2: the report of a model
version, stage `checkpoint`, whoever made it) and spec.py (the four stages, as
tasks.pipeline.registry knows them)."""

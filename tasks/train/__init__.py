"""Training stages: gan.py (store stages `train-gan` and `gan-checkpoint`: plan, resumable run,
checkpoints and their Prefect side) and autoencoder.py (store stage `train-autoencoder`)."""

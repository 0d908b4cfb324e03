"""Encode stage (store stage `encode`): stage.py keys, plans and stores the latents of normalized
items through a stored autoencoder."""

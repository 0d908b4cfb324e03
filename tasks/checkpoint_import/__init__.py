"""Checkpoint-import stage (store stage `checkpoint-import`): stage.py stores official Musika
weight folders as network-set objects."""

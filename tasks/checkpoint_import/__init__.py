"""Checkpoint-import stage (store stage `checkpoint-import`): stage.py stores official Musika
weight folders as network-set objects; spec.py declares the stage to tasks.pipeline.registry (the
model versions it publishes, stage `checkpoint`, are declared and reported by tasks/train/)."""

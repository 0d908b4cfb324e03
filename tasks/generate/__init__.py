"""Generate stage (store stage `generate`): stage.py keys, plans and stores samples of a stored
model."""

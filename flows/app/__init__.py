"""The listening app (`musika-piano app`): ui.py (the Gradio page) over listening.py (its logic,
free of any UI)."""

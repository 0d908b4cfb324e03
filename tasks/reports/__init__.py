"""HTML reports of dataset versions, stored beside the version: report.py (sections per version
stage, writing and publishing), plots.py (PNG figures), spectrograms.py (mel images, shared with
the listening app)."""

"""Evaluate stages (store stages `evaluate-reference`, `evaluate-model`; evaluation versions are
of stage `evaluate`): params.py is what is generated and measured; metrics.py holds the per-clip
and per-set measures (no Prefect, no store); stage.py plans, measures and stores subjects;
report.py (with templates/report.html.j2) is the report of an evaluation version; spec.py
declares the stages to tasks.pipeline.registry."""

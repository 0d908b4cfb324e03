"""HTML reports of dataset versions, stored beside the version; nothing here names a stage.
report.py builds a version's report with the sections its stage's spec names
(tasks.pipeline.registry; the generic sections otherwise), writes, copies and publishes it;
page.py is the shared page (Jinja2 environment, values, shared sections, links into the store)
over templates/ (page, macros, generic sections, CSS); plots.py draws the PNG figures,
spectrograms.py the mel images (shared with the listening app). A stage's own sections live in
its package: tasks/<stage>/report.py and tasks/<stage>/templates/report.html.j2."""

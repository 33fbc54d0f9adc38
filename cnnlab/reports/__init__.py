"""Reports: one self-contained HTML file (or Markdown with its PNGs) per run, per study, and for
runs compared by hand. doc.py is the document as data; run.py, study.py and compare.py build one;
html.py and markdown.py render it; write.py is what the commands call."""

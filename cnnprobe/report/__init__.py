"""Reports of stored runs, for the CLI and the TUI alike.

Layers, each importing only those before it: formatting.py (numbers, times, config
flattening, strict JSON) < files.py (writing export files, ExportError) < summary.py (a
run or a comparison as plain data from the store) < markdown.py (Markdown with plotext
plots) < export.py (JSON / CSV / Markdown exports); heatmap.py (feature maps in the
terminal) < inspection.py (PNG grids, activations.npz, probe tables).
"""

"""Experiments built on the embedded backend (openrlhf_rerule.local) and the synthetic world (openrlhf_rerule.data):
`rerule demo` (demo.py) and `rerule study` (study.py), and the report both write (report.py)."""

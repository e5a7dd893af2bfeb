"""The binding study ("Seeing to Generalize", arXiv 2602.15183).

Core: `task` (the two-hop task and its token layout), `model` (the transformer), `config` (the
config tree and presets), `train` (the one stage trainer), `evaluate`, `run` (a trained run from
its folder). Wings: `images` (the image context and its encoders), `interp` (the mechanism), and
`curriculum` / `reproduce` / `report` (the training regimes and their tables).
"""

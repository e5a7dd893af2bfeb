"""The binding study ("Seeing to Generalize", arXiv 2602.15183): task, model, training, evaluation."""

"""Neural building blocks: embeddings, MLPs, sequence encoders, Transformer layers, experts."""

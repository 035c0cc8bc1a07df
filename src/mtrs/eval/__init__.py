"""Evaluation: metric functions and the one evaluator used by training, evaluate and predict."""
